"""Ember: a self-hosted real-time audio/video server speaking the SparkRTC server API."""
