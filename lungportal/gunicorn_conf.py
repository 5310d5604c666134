"""gunicorn settings for `make run` (bin/run): `--config python:lungportal.gunicorn_conf`.
Both logs go to gunicorn's stdout and stderr, which bin/run sends to $LUNGPORTAL_DATA_DIR/log/web.log
(the terminal shows only the ready message and failures)."""

# The access log names the path only: query strings (a search for a patient's name or MRN) and
# referrers (which carry them too) never reach the log.
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
errorlog = "-"
