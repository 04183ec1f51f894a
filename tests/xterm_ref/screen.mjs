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

import { termState } from './state.mjs';

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

for (const step of input.steps) {
  if (step.write !== undefined) {
    await write(Buffer.from(step.write, 'base64'));
  } else if (step.resize) {
    term.resize(step.resize[1], step.resize[0]);
  }
}
await write('');
process.stdout.write(JSON.stringify(termState(term, title)));
