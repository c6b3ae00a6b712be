"""pvcapid: the cluster over HTTP (a Flask application served by gunicorn)."""
