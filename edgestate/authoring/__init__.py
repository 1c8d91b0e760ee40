"""Module authoring: ``edgestate new`` (a project per language), ``build`` (the
right toolchain with lean settings, and a report against the manifest) and
``dev`` (watch, rebuild, sign with a dev key, redeploy, tail costs).

It sits on top of every other layer, beside ``devkit``, whose node processes
and throwaway publishers ``dev`` uses. Nothing here is needed to run a node.
"""

from edgestate.authoring.build import BuildReport, build_project
from edgestate.authoring.project import LANGUAGES, Project, find_project, new_project

__all__ = ["LANGUAGES", "BuildReport", "Project", "build_project", "find_project", "new_project"]
