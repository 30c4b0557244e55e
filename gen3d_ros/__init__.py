"""gen3d_ros: generative 3D scene completion and differentiable robot rendering for ROS 2."""

__version__ = "0.1.0"
