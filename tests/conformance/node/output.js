// What every script here prints: one JSON object on standard output, then exit 0, or
// {"error": {...}} (the error's class, name, message and, for HTTP and MQTT errors, status,
// topic and body, for AMQP errors their condition and description) and exit 1. A script that
// has not answered within DEADLINE_MS fails.
'use strict';

const DEADLINE_MS = 50000;

function errorJson(err) {
  const out = {
    class: err && err.constructor ? err.constructor.name : typeof err,
    name: err && err.name,
    message: err && err.message,
  };
  const response = err && (err.response || err.transportObject);
  if (response && response.statusCode !== undefined) out.statusCode = response.statusCode;
  if (response && typeof response.topic === 'string') out.topic = response.topic;
  if (err && err.responseBody !== undefined) out.responseBody = err.responseBody;
  if (err && err.result !== undefined) out.result = err.result;
  // An AMQP error as the peer sent it (a rejected delivery's error is passed on as it came).
  if (err && typeof err.condition === 'string') out.condition = err.condition;
  if (err && typeof err.description === 'string') out.description = err.description;
  return out;
}

function finish(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
  process.exit(0);
}

function fail(err) {
  process.stdout.write(JSON.stringify({ error: errorJson(err) }) + '\n');
  process.exit(1);
}

setTimeout(() => fail(Object.assign(new Error(`no answer within ${DEADLINE_MS} ms`), { name: 'ScriptTimeout' })), DEADLINE_MS).unref();
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

module.exports = { errorJson, finish, fail };
