/**
 * A DOM for tests of widgets (jsdom), installed as globals.
 *
 * Import first: JupyterLab's services pick their WebSocket when first loaded,
 * from `window` if there is one, so they are loaded before the DOM exists.
 */
import '@jupyterlab/services';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>', { pretendToBeVisual: true });
const win = dom.window as unknown as Record<string, unknown>;
// Lumino's drag and drop subclasses DragEvent at load; jsdom has none.
win.DragEvent ??= class DragEvent extends dom.window.MouseEvent {};
const names = [
  'document',
  'navigator',
  'Node',
  'Element',
  'HTMLElement',
  'Event',
  'FocusEvent',
  'KeyboardEvent',
  'MouseEvent',
  'DragEvent',
  'getComputedStyle',
  'requestAnimationFrame',
  'cancelAnimationFrame'
];
Object.defineProperty(globalThis, 'window', { value: dom.window, configurable: true, writable: true });
for (const name of names) {
  const value = win[name];
  Object.defineProperty(globalThis, name, {
    value: typeof value === 'function' && /^[a-z]/.test(name) ? value.bind(dom.window) : value,
    configurable: true,
    writable: true
  });
}
