"""What every request passes through: middleware, dispatch, forwarding headers, error rendering."""
