"""``gen3d`` subcommands that live outside :mod:`gen3d_ros.cli`: one module per command family, each with
``register_<name>(subparsers)`` functions that :data:`gen3d_ros.cli.COMMANDS` lists."""
