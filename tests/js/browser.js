// Real Chromium for the browser tests: Debian's /usr/bin/chromium driven by playwright-core.
//
// `scripts/test.sh` installs the `chromium` package; a machine without it fails here with a message
// that says how to get it, never a silent skip. The flags keep Chromium off the network this machine
// cannot reach (background networking, component updates, sync) and run it headless as root; playwright gives every launch a fresh profile.

import { existsSync } from 'node:fs';

import { chromium } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Launches headless Chromium; close it with `await browser.close()`. */
export async function launchChromium() {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: install it with \`apt-get install -y chromium\` ` +
        '(scripts/test.sh does) or set CHROMIUM_PATH',
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * Collects a page's console errors and uncaught exceptions, so a test can assert there were none
 * and show them when it fails.
 */
export function watchPageErrors(page) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console.error: ${m.text()}`);
  });
  return errors;
}
