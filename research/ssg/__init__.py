"""Diagnostics of SSG prompting (docs/ssg.md): held-out loss, prompt localisation, eval-wm controls."""
