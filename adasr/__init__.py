"""adasr: adaptive neural super-resolution of video on constrained devices.

Heavy dependencies (torch, PyAV) are imported by the submodules that need them, not here.
"""

from adasr.errors import AdasrError as AdasrError
from adasr.errors import ConfigError as ConfigError
from adasr.errors import InputError as InputError
from adasr.errors import ModelError as ModelError
from adasr.errors import OutputError as OutputError

__version__ = "0.1.0"
