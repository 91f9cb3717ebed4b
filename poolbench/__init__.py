"""poolbench: which downsampling operator should this CNN use?"""

__version__ = "0.1.0"
