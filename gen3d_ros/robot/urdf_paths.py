"""Where a URDF's mesh URIs lead, and the sandbox they must stay in.

``package://NAME/...`` URIs are resolved through ``package_dirs`` or, when not given, by looking for a folder
called ``NAME`` above the URDF file (the layout of ROS share/ folders and of the ``example-robot-data`` pip
package), then the ament index, then the example-robot-data install. No mesh URI may lead outside its package or
the URDF's own package (:class:`~gen3d_ros.robot.robot_model.URDFPathError`; the rules are in
:func:`gen3d_ros.robot.urdf.load_urdf`).
"""

from __future__ import annotations

import os
import re
import site
import sys
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlparse

from gen3d_ros.robot.robot_model import URDFError, URDFPathError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ALLOW_HINT = "if this file is meant to be read, pass load_urdf(..., allowed_roots=[its folder])"


class UriResolver:
    """Turns URDF mesh URIs (``package://``, ``file://``, relative or absolute paths) into existing files, and
    refuses any that lead outside the places this URDF may read (see :func:`~gen3d_ros.robot.urdf.load_urdf`,
    "Mesh paths").

    Every path is checked after resolving symbolic links and ``..``, so neither a ``..`` in the URI nor a link
    inside a package can reach a file elsewhere.
    """

    def __init__(self, urdf_path: Path, package_dirs: dict[str, Path],
                 allowed_roots: Iterable[str | Path] = ()) -> None:
        self.urdf_path = urdf_path
        self.package_dirs = {k: Path(v).expanduser() for k, v in package_dirs.items()}
        self.own_roots = urdf_package_roots(urdf_path)
        # the same folders as written (links not resolved), to tell a link leading out from a path that does
        self.own_lexical = [Path(os.path.normpath(_package_folder(urdf_path.absolute())))]
        extra = [Path(r).expanduser() for r in allowed_roots] + list(self.package_dirs.values())
        self.extra_roots = _unique(root for folder in extra for root in _package_real_roots(folder))

    def resolve(self, uri: str, link: str) -> Path:
        """The file ``uri`` names, links resolved. Raises :class:`URDFPathError` (outside the allowed roots, or
        not a package name) or ``FileNotFoundError`` (no such file or package)."""
        where = f"{self.urdf_path}: mesh {uri!r} of link {link!r}"
        if uri.startswith("package://"):
            package, _, rest = uri[len("package://"):].partition("/")
            if package in ("", ".", "..") or "\\" in package or "\x00" in package:
                raise URDFPathError(f"{where}: {package!r} is not a package name (package://NAME/path/in/package)",
                                    uri=uri)
            base = self._package_dir(package)
            if base is None:
                raise FileNotFoundError(
                    f"{where}: package {package!r} not found; pass "
                    f"load_urdf(..., package_dirs={{{package!r}: Path('/path/to/{package}')}})"
                )
            candidate = base / rest
            roots = _package_real_roots(base)
            scope = f"package {package!r} ({', '.join(map(str, roots))})"
            lexical_roots = roots + [Path(os.path.normpath(base.absolute()))]
            fix = f"if the package lives elsewhere, pass load_urdf(..., package_dirs={{{package!r}: folder}})"
        elif uri.startswith("file://"):
            parsed = urlparse(uri)
            if parsed.netloc not in ("", "localhost"):
                raise URDFPathError(f"{where}: names the host {parsed.netloc!r}; only local files "
                                    f"(file:///path) can be read", uri=uri)
            candidate = Path(unquote(parsed.path))
            roots = self.own_roots + self.extra_roots
            lexical_roots = roots + self.own_lexical
            scope, fix = self._scope(), _ALLOW_HINT
        elif _SCHEME.match(uri):
            raise URDFError(f"{where}: unsupported URI scheme; use package://, file:// or a path relative to the "
                            f"URDF")
        else:
            candidate = Path(uri)
            if not candidate.is_absolute():
                candidate = self.urdf_path.absolute().parent / candidate
            roots = self.own_roots + self.extra_roots
            lexical_roots = roots + self.own_lexical
            scope, fix = self._scope(), _ALLOW_HINT
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a link loop, a NUL byte in the URI
            raise URDFError(f"{where}: cannot resolve {candidate}: {exc}") from exc
        if not any(real == root or real.is_relative_to(root) for root in roots):
            # Tell a link that leads out from a '..' or an absolute path that is out to begin with.
            lexical = Path(os.path.normpath(candidate.absolute()))
            through_link = any(lexical.is_relative_to(root) for root in lexical_roots)
            how = "a symbolic link on the way leads out" if through_link else "its path leads out"
            raise URDFPathError(
                f"{where} resolves to {real}, outside {scope}: {how}. A URDF may only read meshes inside its own "
                f"package or the package a package:// URI names; {fix}",
                uri=uri, resolved=real, roots=roots,
            )
        if not real.is_file():
            raise FileNotFoundError(f"{where} not found (looked at {candidate})")
        return real

    def _scope(self) -> str:
        own = ", ".join(map(str, self.own_roots))
        extra = f"; allowed roots: {', '.join(map(str, self.extra_roots))}" if self.extra_roots else ""
        return f"the URDF's package root ({own}{extra})"

    def _package_dir(self, package: str) -> Path | None:
        """Where ``package://<package>/`` points: ``package_dirs``, then the URDF's own ancestors (a folder of that
        name, or a sibling package in the same ``share/`` folder or with a ``package.xml``), then the ament
        index of ``AMENT_PREFIX_PATH`` (installed ROS 2 packages), then the example-robot-data install."""
        if package in self.package_dirs:
            return self.package_dirs[package]
        urdf = self.urdf_path.absolute()
        for ancestor in _unique([*urdf.parents, *urdf.resolve().parents]):
            if ancestor.name == package:
                return ancestor
            sibling = ancestor / package
            if sibling.is_dir() and (ancestor.name == "share" or (sibling / "package.xml").is_file()):
                return sibling
        for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
            share = Path(prefix) / "share"
            if (share / "ament_index" / "resource_index" / "packages" / package).is_file() and \
                    (share / package).is_dir():
                return share / package
        if package == "example-robot-data":
            robots = example_robot_data_dir()
            if robots is not None:
                return robots.parent
        return None


def urdf_package_root(urdf_path: str | Path) -> Path:
    """The folder a URDF's ``file://``, absolute and relative mesh paths must stay in (links resolved).

    The nearest folder above the URDF with a ``package.xml`` (a ROS package, source or ``share/`` install);
    else, for the ROS layout ``<package>/urdf/robot.urdf``, the folder above ``urdf/``; else the URDF's folder.
    """
    return _package_folder(Path(urdf_path).absolute()).resolve()


def _package_folder(urdf: Path) -> Path:
    """:func:`urdf_package_root` of an absolute path, links not resolved."""
    for ancestor in urdf.parents:
        if (ancestor / "package.xml").is_file():
            return ancestor
    if urdf.parent.name == "urdf":
        return urdf.parent.parent
    return urdf.parent


def urdf_package_roots(urdf_path: str | Path) -> list[Path]:
    """:func:`urdf_package_root` of the URDF as given and of the file a link to it leads to, each with the real
    folder of its ``package.xml`` (``colcon build --symlink-install`` links every installed file, the URDF and
    its meshes included, back into the source package)."""
    urdf = Path(urdf_path).absolute()
    folders = [urdf_package_root(urdf), urdf_package_root(urdf.resolve())]
    return _unique(root for folder in folders for root in _package_real_roots(folder))


def _package_real_roots(folder: Path) -> list[Path]:
    """``folder`` (links resolved) and, when its ``package.xml`` is a link (a symlink install), that file's real
    folder: the package's files may live there."""
    roots = [folder.resolve()]
    manifest = folder / "package.xml"
    if manifest.is_symlink() and manifest.is_file():
        roots.append(manifest.resolve().parent)
    return _unique(roots)


def _unique(paths: Iterable[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))


def example_robot_data_dir() -> Path | None:
    """``.../cmeel.prefix/share/example-robot-data/robots`` in an installed site-packages, if any."""
    candidates = list(sys.path)
    try:
        candidates += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # virtualenvs with an old site.py
        pass
    for entry in candidates:
        robots = Path(entry) / "cmeel.prefix" / "share" / "example-robot-data" / "robots"
        if robots.is_dir():
            return robots
    return None
