"""Deployment defaults that several packages share, each defined here once.

A site folder, the site CLI and the local-federation launcher all start a site with the same
privacy ceiling; the site store applies it to a store that never had one set.
"""

from __future__ import annotations

#: Privacy ceiling of a new site: the most epsilon one dataset may spend, across rounds and
#: studies, until the site operator changes it.
DEFAULT_CEILING = 10.0
