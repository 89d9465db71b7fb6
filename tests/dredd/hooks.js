// Dredd hooks for returns-mock: a fresh, seeded mock before the run, and the documented error answers
// produced the way a team would produce them (a fault rule, a missing credential, an unknown id).
// Environment: RETURNS_MOCK_URL (the server), RETURNS_MOCK_PROVIDER, RETURNS_MOCK_SCENARIO (a seed file).
const fs = require('fs');
const hooks = require('hooks');

const server = process.env.RETURNS_MOCK_URL;
const provider = process.env.RETURNS_MOCK_PROVIDER;
// Statuses a fault rule answers in the provider's own error format (contracts/admin/fault-rule.json).
const FAULTS = new Set(['429', '500', '502', '503', '504']);

async function admin(method, path, body) {
  const answer = await fetch(`${server}/__admin${path}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!answer.ok) throw new Error(`${method} /__admin${path}: ${answer.status} ${await answer.text()}`);
}

function settle(promise, done) {
  promise.then(() => done(), (error) => done(error));
}

hooks.beforeAll((transactions, done) => {
  const scenario = JSON.parse(fs.readFileSync(process.env.RETURNS_MOCK_SCENARIO, 'utf8'));
  settle(admin('POST', '/reset').then(() => admin('POST', '/seed', scenario)), done);
});

hooks.beforeEach((transaction, done) => {
  // Dredd 14 reads OpenAPI 3.0 only: it drops anyOf, if/then, unevaluatedProperties and nullable types
  // from the 3.1 schemas, and a schema's properties leak into others through allOf. The server runs with
  // --self-check instead, which validates every answer against the whole contract (a mismatch is a 500).
  transaction.expected.bodySchema = { type: 'object' };
  const status = transaction.expected.statusCode;
  const path = transaction.request.uri.split('?')[0];
  if (status.startsWith('2')) return done();
  if (FAULTS.has(status)) {
    const rule = { provider, method: transaction.request.method, path, status: Number(status), times: 1 };
    return settle(admin('POST', '/faults', rule), done);
  }
  if (status === '401') {
    delete transaction.request.headers.Authorization;
    return done();
  }
  const id = transaction.request.uri.match(/^\/returns\/([^/?]+)/);
  if (status === '404' && id) {
    transaction.request.uri = transaction.request.uri.replace(id[1], 'unknown-return');
    transaction.fullPath = transaction.fullPath.replace(id[1], 'unknown-return');
    return done();
  }
  // 400, 405, 408, 409, 413, 422 need another request than the document's example: not Dredd's job.
  transaction.skip = true;
  return done();
});
