"""A separate ROS process for the graph tests (run as a script; SIGINT/SIGTERM end it with exit code 0).

    publisher_process.py cloud --topic /points --rate 10 --count 300 --t0-ns 1000000000000
        synthetic plane + box clouds, frame ``lidar_test``, stamp t0 + i * 100 ms for i = 0, 1, …; ``--points N``
        points (default 4000) of ``--point-step`` bytes (default 16; 32 pads like a driver's layout),
        ``--qos reliable`` (default, depth 5) or ``best_effort`` (what ``sensor_data`` drivers publish with);
        ``--wait-subscriber``: start only once a subscription matched (so every message can count)
    publisher_process.py completed_mesh --topic /t --rate 5
        a fixed gen3d_ros/CompletedMesh (see ``completed_mesh_fields``) with stamp sec=42, nanosec=i
"""

from __future__ import annotations

import argparse
import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from ros_harness import FRAME_PERIOD_NS, completed_mesh_fields, make_cloud, plane_and_box


def build_completed_mesh(i: int):
    from geometry_msgs.msg import Point
    from shape_msgs.msg import Mesh, MeshTriangle
    from std_msgs.msg import ColorRGBA, Header

    from gen3d_ros.msg import CompletedMesh

    f = completed_mesh_fields()
    header = Header(frame_id=f["frame_id"])
    header.stamp.sec, header.stamp.nanosec = 42, i
    mesh = Mesh(vertices=[Point(x=x, y=y, z=z) for x, y, z in f["vertices"]],
                triangles=[MeshTriangle(vertex_indices=list(t)) for t in f["triangles"]])
    return CompletedMesh(header=header, mesh=mesh,
                         vertex_colors=[ColorRGBA(r=r, g=g, b=b, a=a) for r, g, b, a in f["colors"]],
                         voxel_size=f["voxel_size"], steps=f["steps"], input_points=f["input_points"],
                         dropped_points=f["dropped_points"], latency_ms=f["latency_ms"], model_id=f["model_id"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["cloud", "completed_mesh"])
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--t0-ns", type=int, default=1_000_000_000_000)
    parser.add_argument("--points", type=int, default=4000)
    parser.add_argument("--point-step", type=int, default=16)
    parser.add_argument("--qos", choices=["reliable", "best_effort"], default="reliable")
    parser.add_argument("--wait-subscriber", action="store_true")
    args = parser.parse_args(rclpy.utilities.remove_ros_args(sys.argv)[1:])

    rclpy.init()
    node = rclpy.create_node(f"test_{args.kind}_publisher")
    if args.kind == "cloud":
        from sensor_msgs.msg import PointCloud2 as msg_type
    else:
        from gen3d_ros.msg import CompletedMesh as msg_type
    reliability = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}[args.qos]
    qos = QoSProfile(depth=5, reliability=reliability, durability=DurabilityPolicy.VOLATILE)
    n_box = args.points * 3 // 8
    clouds = [plane_and_box(seed=k, n_plane=args.points - n_box, n_box=n_box) for k in range(8)]
    pub = node.create_publisher(msg_type, args.topic, qos)
    state = {"i": 0}

    def tick() -> None:
        i = state["i"]
        if i >= args.count:
            return
        if args.kind == "cloud":
            msg = make_cloud(clouds[i % 8], stamp_ns=args.t0_ns + i * FRAME_PERIOD_NS, point_step=args.point_step)
        else:
            msg = build_completed_mesh(i)
        pub.publish(msg)
        state["i"] = i + 1

    if args.wait_subscriber:
        while pub.get_subscription_count() == 0:
            rclpy.spin_once(node, timeout_sec=0.05)
        time.sleep(0.5)  # the subscriber's side of the match may lag behind ours
    node.create_timer(1.0 / args.rate, tick)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
