"""gen3d_ros: generative 3D scene completion and differentiable robot rendering for ROS 2."""

__version__ = "0.1.0"

# The generated ROS 2 messages (gen3d_ros.msg and their C type-support modules) may be installed in another
# folder named gen3d_ros on sys.path (the venv's site-packages on pip machines): merge them in.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
