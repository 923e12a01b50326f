// Ember console: the few things a page cannot do without script. Everything works without it except
// the live refresh of the rooms page (reload instead) and in-page HLS playback in browsers without HLS.
"use strict";

// Copy buttons: data-copy names the element whose text is copied.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});

// Recordings: MP4 plays natively; HLS natively where the browser has it, else through hls.js (served by
// Ember at /player/hls.light.min.js, loaded by the page).
function attachPlayers() {
  for (const video of document.querySelectorAll("video[data-src]")) {
    const url = video.dataset.src;
    const hlsNative = video.canPlayType("application/vnd.apple.mpegurl");
    if (video.dataset.format === "HLS" && !hlsNative && window.Hls && window.Hls.isSupported()) {
      const hls = new window.Hls({ enableWorker: true });
      hls.loadSource(url);
      hls.attachMedia(video);
      video.emberHls = hls;
      video.dataset.engine = "hls.js";
    } else {
      video.src = url;
      video.dataset.engine = "native";
    }
  }
}

// Live rooms: the server sends the rooms table (HTML it rendered) whenever it changes.
function followRooms() {
  const box = document.getElementById("live-rooms");
  if (!box || !window.EventSource) return;
  const status = document.getElementById("live-status");
  const events = new EventSource(box.dataset.events);
  window.emberRooms = { updates: 0 };
  events.addEventListener("rooms", (event) => {
    box.innerHTML = event.data;
    window.emberRooms.updates += 1;
    if (status) status.textContent = "Live: updated " + new Date().toLocaleTimeString();
  });
  events.addEventListener("signed-out", () => { events.close(); location.reload(); });
  events.addEventListener("error", () => {
    if (status) status.textContent = "Reconnecting...";
  });
}

// Jobs: a running mixed job's live preview, fetched again every 2 s (the worker rewrites it as often). The
// next picture is loaded aside and swapped in whole; while there is none the last one stays.
const PREVIEW_MS = 2000;
function refreshPreviews() {
  const images = document.querySelectorAll("img[data-preview]");
  if (!images.length) return;
  let round = 0;
  window.emberPreviews = { loaded: 0 };
  for (const img of images) {
    // The worker may not have composed its first picture yet: say so rather than show a broken image.
    img.addEventListener("error", () => {
      img.hidden = true;
      const status = img.closest("figure").querySelector(".preview-status");
      if (status) status.textContent = "waiting for the first picture";
    });
    img.addEventListener("load", () => { img.hidden = false; });
  }
  setInterval(() => {
    round += 1;
    for (const img of images) {
      const base = img.src.split("?")[0];
      const next = new Image();
      const status = img.closest("figure").querySelector(".preview-status");
      next.onload = () => {
        img.src = next.src;
        window.emberPreviews.loaded += 1;
        if (status) status.textContent = "updated " + new Date().toLocaleTimeString();
      };
      next.onerror = () => { if (status) status.textContent = "no new picture (the job may have ended: reload)"; };
      next.src = base + "?n=" + round;
    }
  }, PREVIEW_MS);
}

// Jobs: the custom layout's panes editor. Without script it shows the rows sent and one blank row; with it,
// rows are added and removed here, and the editor shows only while the Custom layout is chosen.
function panesEditor() {
  const editor = document.getElementById("panes");
  if (!editor) return;
  const rows = document.getElementById("pane-rows");
  const template = document.getElementById("pane-template");
  const add = editor.querySelector("button[data-add-pane]");
  let made = 0;
  const renumber = () => {
    rows.querySelectorAll("[data-pane]").forEach((pane, i) => {
      pane.querySelector("[data-pane-number]").textContent = String(i + 1);
      pane.querySelector("button[data-remove-pane]").textContent = "Remove pane " + (i + 1);
    });
  };
  const wire = (pane) => {
    const remove = pane.querySelector("button[data-remove-pane]");
    remove.hidden = false;
    remove.addEventListener("click", () => { pane.remove(); renumber(); add.focus(); });
  };
  rows.querySelectorAll("[data-pane]").forEach(wire);
  add.hidden = false;
  add.addEventListener("click", () => {
    made += 1;
    const pane = template.content.firstElementChild.cloneNode(true);
    for (const el of pane.querySelectorAll("[id]")) el.id = el.id.replace("pane-new-", `pane-added${made}-`);
    for (const el of pane.querySelectorAll("label[for]")) el.htmlFor = el.htmlFor.replace("pane-new-", `pane-added${made}-`);
    rows.appendChild(pane);
    wire(pane);
    renumber();
    pane.querySelector("input").focus();
  });
  const form = editor.closest("form");
  const show = () => {
    const chosen = form.querySelector("input[name=layout_template]:checked");
    editor.hidden = !chosen || chosen.value !== "custom";
  };
  form.addEventListener("change", (event) => { if (event.target.name === "layout_template") show(); });
  show();
}

document.addEventListener("DOMContentLoaded", () => {
  panesEditor();
  attachPlayers();
  followRooms();
  refreshPreviews();
});
