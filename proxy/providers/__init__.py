"""Upstream batch providers behind one seam: `base` (the BatchProvider protocol), `registry` (name -> provider),
and one folder per provider; `vertex/` is the first."""
