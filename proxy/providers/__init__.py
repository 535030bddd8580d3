"""Upstream batch providers behind one seam; `vertex/` is the first."""
