/**
 * A blinking cursor that does not slow down typing.
 *
 * Why not xterm's own `cursorBlink`: its DOM renderer blinks the cursor with an
 * infinite CSS animation, so a frame is always pending. Chromium's scheduler
 * (`DeferRendererTasksAfterInput`, on by default) holds back a page's other
 * tasks after a key press until the next frame is drawn whenever that key
 * press leaves a frame pending. The websocket message that carries the echo is
 * one of those tasks. With the animation, every keystroke's echo therefore
 * waited for the next frame: p50 11-14 ms from keydown to the echo in xterm's
 * buffer, against 7 ms without it (`tests/browser/test_terminal.py -k latency`).
 *
 * So we turn xterm's blink off and toggle one class on the panel from a timer.
 * A key press then finds no frame pending, and the echo is handled as soon as
 * it arrives. The cursor is shown again when output is written (the cursor
 * moved), never from the key event itself, for the same reason. The CSS that
 * hides the cursor in the "off" phase is in `style/base.css`.
 */
import { IDisposable } from '@lumino/disposable';

/** Class on the panel during the cursor's "off" phase. */
export const CURSOR_OFF_CLASS = 'jp-mod-cursorOff';

/** Half a blink period, as xterm's renderers use. */
const BLINK_MS = 600;

export class CursorBlink implements IDisposable {
  /**
   * @param _host - the panel's node; it gets {@link CURSOR_OFF_CLASS} and is
   *   watched for focus (the cursor blinks only in a focused terminal).
   */
  constructor(private _host: HTMLElement) {
    _host.addEventListener('focusin', this._onFocusIn);
    _host.addEventListener('focusout', this._onFocusOut);
  }

  /** Blink or not (the `cursorBlink` setting). */
  get enabled(): boolean {
    return this._enabled;
  }

  set enabled(value: boolean) {
    this._enabled = value;
    this._update();
  }

  /** True while the blink timer runs. */
  get isBlinking(): boolean {
    return this._timer !== 0;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /**
   * Output arrived: show the cursor and start a new "on" phase, so the
   * cursor stays solid while text flows. Cheap enough for every write.
   */
  reset(): void {
    this._lastReset = performance.now();
    if (this._off) {
      this._show();
    }
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._host.removeEventListener('focusin', this._onFocusIn);
    this._host.removeEventListener('focusout', this._onFocusOut);
    this._stop();
  }

  private _onFocusIn = (): void => {
    this._focused = true;
    this._update();
  };

  private _onFocusOut = (event: FocusEvent): void => {
    if (event.relatedTarget instanceof Node && this._host.contains(event.relatedTarget)) {
      return; // focus moves within the panel
    }
    this._focused = false;
    this._update();
  };

  private _update(): void {
    if (this._enabled && this._focused && !this._disposed) {
      if (!this._timer) {
        this._lastReset = performance.now();
        this._schedule(BLINK_MS);
      }
    } else {
      this._stop();
    }
  }

  private _schedule(delay: number): void {
    this._timer = window.setTimeout(this._tick, delay);
  }

  private _tick = (): void => {
    const sinceReset = performance.now() - this._lastReset;
    if (!this._off && sinceReset < BLINK_MS) {
      // Output came meanwhile: the "on" phase runs a full period from it.
      this._schedule(BLINK_MS - sinceReset);
      return;
    }
    if (this._off) {
      this._show();
    } else {
      this._off = true;
      this._host.classList.add(CURSOR_OFF_CLASS);
    }
    this._schedule(BLINK_MS);
  };

  private _show(): void {
    this._off = false;
    this._host.classList.remove(CURSOR_OFF_CLASS);
  }

  private _stop(): void {
    window.clearTimeout(this._timer);
    this._timer = 0;
    if (this._off) {
      this._show();
    }
  }

  private _enabled = false;
  private _focused = false;
  private _off = false;
  private _timer = 0;
  private _lastReset = 0;
  private _disposed = false;
}
