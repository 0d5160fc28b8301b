"""HTTP serving: the Flask app factory, per-session context, the production server."""
