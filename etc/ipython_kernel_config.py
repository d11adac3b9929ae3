# IPython's configuration for the project's kernels ("Python (veralab)" and "python3", .venv's Python): `make setup`
# copies it to .venv/etc/ipython/, where every IPython of that environment reads it. papermill and JupyterLab talk to
# these kernels over TCP on 127.0.0.1 with HMAC-signed messages, and ipykernel warns at every start that TCP is not
# encrypted; that one warning is dropped here, nothing else (veralab's own sweeps use IPC sockets in a private folder).
import logging


class _NoTcpWarning(logging.Filter):
    def filter(self, record):
        return "running over TCP without encryption" not in record.getMessage()


logging.getLogger("IPKernelApp").addFilter(_NoTcpWarning())
