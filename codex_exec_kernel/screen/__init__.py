"""The terminal screen model of a PTY process (issue 14), one job per module.

* :mod:`.model`: ``ScreenModel``, pyte's screen extended with what a redraw needs
  (alternate screen, scrollback, palette-exact colours, keypad and mouse modes).
* :mod:`.modes`: ``ModeTracker``, a regex pass that keeps the modes exact over bytes
  the model skipped.
* :mod:`.render`: ``render()``, the model as bytes that redraw it on a fresh xterm.js.
* :mod:`.feeder`: ``ScreenFeeder``, feeds the model lazily, in bounded steps, off the
  hot path; skips when output outruns it.
"""
