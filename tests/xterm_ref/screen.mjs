// The reference terminal for screen-model tests (issue 14): xterm.js's own headless
// terminal (@xterm/headless, the labextension's devDependency), run by node.
//
// stdin: JSON {rows, cols, scrollback?, steps: [{write: "<base64>"} | {resize: [rows, cols]}]}
// stdout: JSON {active, cursor: {x, y}, cursorHidden, title, modes, buffers: {normal, alternate}}
//   where each buffer is {length, baseY, lines: [[text, [attr per cell]]]}; a cell's attr
//   is "fgMode:fg/bgMode:bg/flags" (flags: b d i u k r h s = bold dim italic underline
//   blink inverse invisible strikethrough); empty cells count as a plain space.
// Shared by the Python tests (tests/screen_ref.py) and the panel's tests (issue-14ts).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(new URL('../../labextension/package.json', import.meta.url));
const { Terminal } = require('@xterm/headless');

const input = JSON.parse(readFileSync(0, 'utf8'));
const term = new Terminal({
  rows: input.rows,
  cols: input.cols,
  scrollback: input.scrollback ?? 2000,
  allowProposedApi: true
});
let title = '';
term.onTitleChange(t => {
  title = t;
});

function write(data) {
  return new Promise(resolve => term.write(data, resolve));
}

function mode(cell, kind) {
  if (kind === 'fg') {
    if (cell.isFgDefault()) return 'd';
    if (cell.isFgRGB()) return `rgb:${cell.getFgColor()}`;
    return `${cell.getFgColorMode() === 16777216 ? 'p16' : 'p256'}:${cell.getFgColor()}`;
  }
  if (cell.isBgDefault()) return 'd';
  if (cell.isBgRGB()) return `rgb:${cell.getBgColor()}`;
  return `${cell.getBgColorMode() === 16777216 ? 'p16' : 'p256'}:${cell.getBgColor()}`;
}

function flags(cell) {
  return (
    (cell.isBold() ? 'b' : '') +
    (cell.isDim() ? 'd' : '') +
    (cell.isItalic() ? 'i' : '') +
    (cell.isUnderline() ? 'u' : '') +
    (cell.isBlink() ? 'k' : '') +
    (cell.isInverse() ? 'r' : '') +
    (cell.isInvisible() ? 'h' : '') +
    (cell.isStrikethrough() ? 's' : '')
  );
}

function dump(buffer) {
  const lines = [];
  const cell = buffer.getNullCell();
  for (let y = 0; y < buffer.length; y++) {
    const line = buffer.getLine(y);
    let text = '';
    const attrs = [];
    for (let x = 0; x < term.cols; x++) {
      line.getCell(x, cell);
      if (cell.getWidth() === 0) continue; // the second half of a wide character
      text += cell.getChars() || ' ';
      attrs.push(`${mode(cell, 'fg')}/${mode(cell, 'bg')}/${flags(cell)}`);
    }
    lines.push([text, attrs]);
  }
  return { length: buffer.length, baseY: buffer.baseY, lines };
}

for (const step of input.steps) {
  if (step.write !== undefined) {
    await write(Buffer.from(step.write, 'base64'));
  } else if (step.resize) {
    term.resize(step.resize[1], step.resize[0]);
  }
}
await write('');
const active = term.buffer.active;
const core = term._core;
process.stdout.write(
  JSON.stringify({
    active: active.type,
    cursor: { x: active.cursorX, y: active.cursorY },
    cursorHidden: Boolean(core?.coreService?.isCursorHidden),
    title,
    modes: term.modes,
    buffers: { normal: dump(term.buffer.normal), alternate: dump(term.buffer.alternate) }
  })
);
