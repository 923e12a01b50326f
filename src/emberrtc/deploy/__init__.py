"""Running Ember on a server: the public URL it hands out, its systemd unit, and ``ember doctor``."""
