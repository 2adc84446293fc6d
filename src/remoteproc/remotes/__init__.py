"""Remote processors written in Python, for the process platform (``platforms/process.py``).

Each module here is a program that plays the *remote* side of a transport, built on the rpmsg
remote role (``remoteproc.rpmsg.remote``): ``echo`` is OpenAMP's echo demo
(``python -m remoteproc.remotes.echo --shm NAME --socket PATH``). Remotes are separate processes
from the host; nothing in the host's packages imports this one.
"""
