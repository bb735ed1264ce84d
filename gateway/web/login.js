'use strict';
// Gatehouse's login page: POST /api2/json/access/ticket with http-only=1, so that proxyd puts
// the session ticket in the HttpOnly cookie and this script never sees it; then, when the
// account has second factors, the second call with tfa-challenge (the half-authenticated
// "!tfa!" ticket, which is no session) and password "totp:<code>", "recovery:<code>" or
// "webauthn:<assertion JSON>". Afterwards the browser goes to "next".
(() => {
  const gh = window.gatehouse;
  const form = document.getElementById('login');
  const loginError = document.getElementById('login-error');
  const tfa = document.getElementById('tfa');
  const next = gh.local(form.dataset.next) ? form.dataset.next : '/gatehouse/account';
  let pending = null; // {username, challengeTicket, challenge} between the two steps

  // ticketCall makes one ticket request and explains a refusal; it answers the data of a
  // success or null.
  async function ticketCall(body, showError) {
    let a;
    try {
      a = await gh.api('POST', '/access/ticket', { ...body, 'http-only': 1 });
    } catch (e) {
      showError('Cannot reach the server. Check your connection and try again.');
      return null;
    }
    if (a.status === 200 && a.data) return a.data;
    showError(a.status === 401 ? null : gh.explain(a));
    return null;
  }

  // tfaChallenge returns the challenge inside a "!tfa!" ticket, or null for a full ticket.
  // The ticket is <prefix>:<percent-encoded data>:<hex time>::<signature>.
  function tfaChallenge(ticket) {
    if (typeof ticket !== 'string' || !ticket.includes(':!tfa!') && !ticket.includes(':%21tfa%21')) return null;
    try {
      return JSON.parse(decodeURIComponent(ticket.split(':')[1]).slice(5));
    } catch (e) {
      return {}; // no factor this page knows: it says so
    }
  }

  function done() {
    location.assign(next);
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    gh.clearErrors(form);
    const { username, password, realm } = form.elements;
    if (!gh.required(username, password)) return;
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const body = { username: username.value.trim(), password: password.value };
      if (!body.username.includes('@')) body.realm = realm.value;
      const data = await ticketCall(body, (msg) => {
        if (msg === null) {
          loginError.textContent = 'Sign-in failed: wrong user name, realm or password.';
          gh.fieldError(password, 'Check your password, user name and realm.');
          password.select();
          password.focus();
        } else {
          loginError.textContent = msg;
        }
      });
      if (!data) return;
      const challenge = tfaChallenge(data.ticket);
      if (!challenge) {
        done();
        return;
      }
      pending = { username: data.username, challengeTicket: data.ticket, challenge };
      showTFA(challenge);
    } finally {
      button.disabled = false;
    }
  });

  // showTFA swaps the password form for the factors the account has.
  function showTFA(ch) {
    form.hidden = true;
    document.getElementById('notice').hidden = true;
    tfa.hidden = false;
    const webauthn = !!(ch.webauthn && window.PublicKeyCredential);
    const totp = !!ch.totp;
    const recovery = Array.isArray(ch.recovery) && ch.recovery.length > 0;
    document.getElementById('tfa-webauthn').hidden = !webauthn;
    document.getElementById('tfa-totp').hidden = !totp;
    document.getElementById('tfa-recovery').hidden = !recovery;
    document.getElementById('tfa-none').hidden = webauthn || totp || recovery;
    const first = totp ? 'totp-code' : webauthn ? 'webauthn-button' : recovery ? 'recovery-code' : 'tfa-restart';
    document.getElementById(first).focus();
  }

  // secondStep sends one answer to the challenge.
  async function secondStep(answer, showError) {
    const data = await ticketCall({
      username: pending.username,
      'tfa-challenge': pending.challengeTicket,
      password: answer,
    }, showError);
    if (data) done();
  }

  for (const [id, input, kind, wrong] of [
    ['tfa-totp', 'totp-code', 'totp', 'This code was not accepted. Wait for the next code and try again.'],
    ['tfa-recovery', 'recovery-code', 'recovery', 'This recovery code was not accepted (each works once).'],
  ]) {
    const f = document.getElementById(id);
    const field = document.getElementById(input);
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      gh.clearErrors(f);
      if (!gh.required(field)) return;
      const button = f.querySelector('button');
      button.disabled = true;
      try {
        await secondStep(`${kind}:${field.value.trim()}`, (msg) => {
          gh.fieldError(field, msg === null ? wrong : msg);
          field.select();
          field.focus();
        });
      } finally {
        button.disabled = false;
      }
    });
  }

  const waButton = document.getElementById('webauthn-button');
  waButton.addEventListener('click', async () => {
    gh.fieldError(waButton, '');
    const pk = pending.challenge.webauthn.publicKey;
    let cred;
    try {
      cred = await navigator.credentials.get({
        publicKey: {
          ...pk,
          challenge: gh.fromB64u(pk.challenge),
          allowCredentials: (pk.allowCredentials || []).map((c) => ({ ...c, id: gh.fromB64u(c.id) })),
        },
      });
    } catch (e) {
      gh.fieldError(waButton, `The security key did not answer (${e.name}). Try again.`);
      return;
    }
    const r = cred.response;
    const answer = {
      challenge: pk.challenge,
      id: cred.id,
      rawId: gh.toB64u(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: gh.toB64u(r.authenticatorData),
        clientDataJSON: gh.toB64u(r.clientDataJSON),
        signature: gh.toB64u(r.signature),
        userHandle: r.userHandle ? gh.toB64u(r.userHandle) : null,
      },
    };
    waButton.disabled = true;
    await secondStep('webauthn:' + JSON.stringify(answer), (msg) => {
      // The challenge is used up either way: a new one needs a new sign-in.
      gh.fieldError(waButton, (msg === null ? 'The security key was not accepted.' : msg) + ' Choose "Start over" to try again.');
    });
  });

  document.getElementById('tfa-restart').addEventListener('click', () => {
    pending = null;
    tfa.hidden = true;
    form.hidden = false;
    gh.clearErrors(tfa);
    waButton.disabled = false;
    form.elements.password.value = '';
    form.elements.password.focus();
  });
})();
