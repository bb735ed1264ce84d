'use strict';
// Shared by Gatehouse's pages: calls to the PBS API, errors next to their fields, WebAuthn's
// base64url conversions and the copy button. No page script ever sees the session ticket: it
// travels in the HttpOnly cookie only.
window.gatehouse = (() => {
  const API = '/api2/json';

  // api calls the PBS API with a JSON body and answers {status, data, message, errors}; it
  // never throws for an HTTP status, only when the server cannot be reached.
  async function api(method, path, body, csrf) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (csrf) headers.CSRFPreventionToken = csrf;
    const resp = await fetch(API + path, {
      method,
      credentials: 'same-origin',
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = await resp.json().catch(() => ({}));
    return { status: resp.status, data: answer.data, message: answer.message || '', errors: answer.errors || {} };
  }

  // fieldError shows msg under input (its error element is #<id>-error) and marks it invalid.
  function fieldError(input, msg) {
    const el = document.getElementById(input.id + '-error');
    if (el) el.textContent = msg;
    if (msg) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }

  // clearErrors empties every error message in container and unmarks its inputs.
  function clearErrors(container) {
    container.querySelectorAll('.error').forEach((el) => { el.textContent = ''; });
    container.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
  }

  // required shows "Required." next to every empty input given and focuses the first; it
  // returns whether all are filled.
  function required(...inputs) {
    let first = null;
    for (const input of inputs) {
      if (input.value.trim() === '') {
        fieldError(input, 'Required.');
        first = first || input;
      }
    }
    if (first) first.focus();
    return first === null;
  }

  // Base64url without padding, as WebAuthn's JSON uses it, to and from bytes.
  function fromB64u(s) {
    const b64 = s.replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
  }
  function toB64u(buf) {
    let bin = '';
    new Uint8Array(buf).forEach((b) => { bin += String.fromCharCode(b); });
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  // local reports whether p is a path on this origin (the server checks it too): no open
  // redirect through "next".
  const local = (p) => typeof p === 'string' && p.startsWith('/') && !p.startsWith('//') &&
    !p.startsWith('/\\') && !/[\u0000-\u001f\u007f\\]/.test(p);

  // copyButton makes button copy the text of source, and says so in status.
  function copyButton(button, source, status) {
    button.addEventListener('click', async () => {
      const text = source.textContent;
      try {
        await navigator.clipboard.writeText(text);
      } catch (e) {
        // No clipboard permission (an embedded or headless browser): select the text so
        // that Ctrl-C copies it.
        const range = document.createRange();
        range.selectNodeContents(source);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        status.textContent = 'Selected: press Ctrl-C to copy.';
        return;
      }
      status.textContent = 'Copied.';
    });
  }

  // explain turns a refused API answer into one sentence.
  function explain(a) {
    if (a.status === 429) return 'Too many failed attempts. Try again later.';
    if (a.status === 502 || a.status === 503) return 'The authentication service is unavailable. Try again later.';
    const details = Object.entries(a.errors).map(([k, v]) => `${k}: ${v}`).join('; ');
    return [a.message.trim(), details].filter(Boolean).join(' ') || `The server answered ${a.status}.`;
  }

  return { api, fieldError, clearErrors, required, fromB64u, toB64u, local, copyButton, explain };
})();
