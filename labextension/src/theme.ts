/**
 * xterm colours taken from the JupyterLab theme's CSS variables, so the
 * terminal follows light/dark themes without a table of its own.
 */
import type { ITheme } from '@xterm/xterm';

function cssVar(name: string, fallback: string): string {
  const value = getComputedStyle(document.body).getPropertyValue(name).trim();
  return value || fallback;
}

/** The terminal theme for the current JupyterLab theme. */
export function terminalTheme(isLight: boolean): ITheme {
  const background = cssVar('--jp-layout-color0', isLight ? '#ffffff' : '#111111');
  const foreground = cssVar('--jp-ui-font-color0', isLight ? '#000000' : '#ffffff');
  const base: ITheme = {
    background,
    foreground,
    cursor: foreground,
    cursorAccent: background,
    selectionBackground: isLight ? 'rgba(97, 97, 97, 0.3)' : 'rgba(255, 255, 255, 0.3)',
    selectionInactiveBackground: isLight ? 'rgba(189, 189, 189, 0.3)' : 'rgba(255, 255, 255, 0.15)'
  };
  if (!isLight) {
    return base;
  }
  // xterm's default ANSI palette is tuned for dark backgrounds; these keep
  // "white" and "yellow" text readable on a light one.
  return {
    ...base,
    black: '#000000',
    red: '#c91b00',
    green: '#00a600',
    yellow: '#a68a00',
    blue: '#0225c7',
    magenta: '#b13bc2',
    cyan: '#00a5b2',
    white: '#7f7f7f',
    brightBlack: '#686868',
    brightRed: '#e0433a',
    brightGreen: '#2aa52a',
    brightYellow: '#b59b00',
    brightBlue: '#4a6ff2',
    brightMagenta: '#c35bd2',
    brightCyan: '#1fb4c2',
    brightWhite: '#4d4d4d'
  };
}
