"""Learned 2D keypoints of a robot and what they give: the camera from known joints (PnP), initial joints, tracking.

- :mod:`~.definition`: :class:`KeypointSet` (link origins + mesh ends), projection, visibility.
- :mod:`~.network`: :class:`KeypointNet` (heatmaps + robot mask), heatmap decoding.
- :mod:`~.detector`: :class:`KeypointDetector` (checkpoint ``gen3d_ros.keypoints/1``, images in, keypoints out).
- :mod:`~.solve`: PnP + RANSAC for the camera, FK + projection fitting for the joints.
- :mod:`~.estimator`: :class:`KeypointPoseEstimator` (keypoints, then Dr. Robot render-and-compare refinement;
  calibration over frames; tracking re-anchored on keypoints).

Training lives in :mod:`gen3d_ros.robot.training.keypoints`.
"""
