"""Media plane: the Janus WebRTC server (config, process supervision, API client)."""
