"""Pipeline stages: pool -> extract -> retrieve -> render -> publish; each a pure core plus a Stage."""
