"""Version 1 of the HTTP API: one router per area, each route one service call."""
