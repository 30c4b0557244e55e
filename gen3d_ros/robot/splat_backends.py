"""Names of the splatting backends, importable without torch (configs and the ROS layer list them as choices)."""

SPLAT_BACKENDS = ("torch", "gsplat")
#: What a config's ``backend`` may name: ``auto`` picks gsplat on CUDA when importable, else the torch reference.
BACKEND_CHOICES = ("auto", *SPLAT_BACKENDS)
