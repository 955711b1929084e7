"""ksha: a SaltStack formula and orchestration for a highly-available KubeSphere cluster."""

__version__ = "0.1.0"
