#!/usr/bin/env node
// The real Node.js IoT Hub SDKs (`azure-iothub` for the service, `azure-iot-device` with
// `azure-iot-device-mqtt` for devices), driven one scenario at a time by test_cli_gaps.py.
// The scenarios follow Microsoft's own end-to-end suite of the Node SDK (e2etests/test/
// registry.js, twin_e2e_tests.js, device_identity_helper.js).
//
// Every subcommand prints one JSON object as `output.js` says. The service connection string is $IRONHUB_CONNECTION_STRING;
// trust comes from NODE_EXTRA_CA_CERTS=<ca.pem>.
//
//   node hub.js twin-null --device-id D --key K
//       Device D (symmetric key K) connected over MQTT watches its desired properties while the
//       service sets {a, b}, then sends {"properties": {"desired": null}} and {"tags": null}
//       with Twin.update: prints the versions and properties the device saw, and the twin.
//   node hub.js twin-etag --device-id D
//       A new device's twin: Registry.getTwin, then updateTwin with the etag it returned, then
//       updateTwin with a wrong etag: prints the etags and the error's status.
//   node hub.js scopes --prefix P
//       registry.js's "scoped device" and "nested Edge devices" scenarios: prints what the hub
//       answered to each step.
//   node hub.js x509 --hub H --device-id D --cert F --key F --text T [--transport mqtt|mqttws]
//       Client.fromConnectionString("HostName=H;DeviceId=D;x509=true", Mqtt or MqttWs) with
//       setOptions({cert, key}): open, sendEvent(T), close.
'use strict';

const fs = require('node:fs');
const { parseArgs } = require('node:util');

const { errorJson, finish, fail } = require('./output');

function registry() {
  const cs = process.env.IRONHUB_CONNECTION_STRING;
  if (!cs) throw new Error('IRONHUB_CONNECTION_STRING is not set');
  return require('azure-iothub').Registry.fromConnectionString(cs);
}

function hostOf() {
  return /HostName=([^;]+)/.exec(process.env.IRONHUB_CONNECTION_STRING)[1];
}

// Resolves with the outcome of a callback-style call: {ok: result} or {err}.
function settle(call) {
  return new Promise((resolve) => call((err, result) => resolve(err ? { err } : { ok: result })));
}

async function must(call) {
  const r = await settle(call);
  if (r.err) throw r.err;
  return r.ok;
}

async function twinNull(argv) {
  const { values } = parseArgs({ args: argv, options: { 'device-id': { type: 'string' }, key: { type: 'string' } } });
  const id = values['device-id'];
  const { Client } = require('azure-iot-device');
  const { Mqtt } = require('azure-iot-device-mqtt');
  const device = Client.fromConnectionString(`HostName=${hostOf()};DeviceId=${id};SharedAccessKey=${values.key}`, Mqtt);
  device.on('error', fail);
  await must((cb) => device.open(cb));
  const deviceTwin = await must((cb) => device.getTwin(cb));
  const seen = [];
  let waiter = null;
  deviceTwin.on('properties.desired', (props) => {
    seen.push({ version: props.$version, desired: JSON.parse(JSON.stringify(deviceTwin.properties.desired)) });
    if (waiter && waiter.test(props.$version)) waiter.resolve();
  });
  const initial = deviceTwin.properties.desired.$version;
  const reach = (version) => new Promise((resolve) => {
    if (seen.some((s) => s.version >= version)) return resolve();
    waiter = { test: (v) => v >= version, resolve };
  });

  const reg = registry();
  const serviceTwin = await must((cb) => reg.getTwin(id, cb));
  await must((cb) => serviceTwin.update({ tags: { t: 1, u: { v: 2 } }, properties: { desired: { a: 1, b: { c: 2 } } } }, cb));
  await reach(initial + 1);
  await must((cb) => serviceTwin.update({ properties: { desired: null } }, cb));
  await reach(initial + 2);
  const afterDesired = JSON.parse(JSON.stringify(serviceTwin.properties.desired));
  await must((cb) => serviceTwin.update({ tags: null }, cb));
  const twin = await must((cb) => reg.getTwin(id, cb));
  await must((cb) => device.close(cb));
  finish({
    initialVersion: initial,
    seen,
    deviceDesired: deviceTwin.properties.desired,
    serviceDesiredAfterClear: afterDesired,
    tags: twin.tags,
    desiredVersion: twin.properties.desired.$version,
  });
}

async function twinEtag(argv) {
  const { values } = parseArgs({ args: argv, options: { 'device-id': { type: 'string' } } });
  const id = values['device-id'];
  const reg = registry();
  const first = await must((cb) => reg.getTwin(id, cb));
  const updated = await must((cb) => reg.updateTwin(id, { properties: { desired: { telemetryInterval: 100 } } }, first.etag, cb));
  const wrong = await settle((cb) => reg.updateTwin(id, { properties: { desired: { telemetryInterval: 200 } } }, 'abc', cb));
  finish({
    firstEtag: first.etag,
    updatedEtag: updated.etag,
    telemetryInterval: updated.properties.desired.telemetryInterval,
    wrongEtagError: wrong.err ? errorJson(wrong.err) : null,
  });
}

async function scopes(argv) {
  const { values } = parseArgs({ args: argv, options: { prefix: { type: 'string' } } });
  const p = values.prefix;
  const reg = registry();
  const keys = () => ({
    symmetricKey: {
      primaryKey: Buffer.from('1234567890qwerty').toString('base64'),
      secondaryKey: Buffer.from('ytrewq0987654321').toString('base64'),
    },
  });
  const out = {};
  // "Can create a scoped device" (and is refused a random scope afterwards).
  const edge = await must((cb) => reg.create({ deviceId: `${p}-edge`, authentication: keys(), status: 'enabled', capabilities: { iotEdge: true } }, cb));
  out.edgeScope = edge.deviceScope;
  const scoped = await must((cb) => reg.create({ deviceId: `${p}-scoped`, authentication: keys(), status: 'enabled', deviceScope: edge.deviceScope }, cb));
  out.scoped = { deviceScope: scoped.deviceScope, parentScopes: scoped.parentScopes };
  scoped.deviceScope = require('node:crypto').randomUUID();
  const refused = await settle((cb) => reg.update(scoped, cb));
  out.randomScopeUpdate = refused.err ? errorJson(refused.err) : { accepted: refused.ok };
  out.scopedAfter = (await must((cb) => reg.get(`${p}-scoped`, cb))).deviceScope;
  // "Can create nested Edge devices".
  const root = await must((cb) => reg.create({ deviceId: `${p}-root`, authentication: keys(), status: 'enabled', capabilities: { iotEdge: true } }, cb));
  const child = await must((cb) => reg.create({ deviceId: `${p}-child`, authentication: keys(), status: 'enabled', capabilities: { iotEdge: true }, parentScopes: [root.deviceScope] }, cb));
  const leaf = await must((cb) => reg.create({ deviceId: `${p}-leaf`, authentication: keys(), status: 'enabled', deviceScope: child.deviceScope, parentScopes: [child.deviceScope] }, cb));
  out.nested = {
    rootScope: root.deviceScope,
    child: { deviceScope: child.deviceScope, parentScopes: child.parentScopes },
    leaf: { deviceScope: leaf.deviceScope, parentScopes: leaf.parentScopes },
  };
  finish(out);
}

async function x509(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      hub: { type: 'string' },
      'device-id': { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      text: { type: 'string' },
      transport: { type: 'string', default: 'mqtt' },
    },
  });
  const { Client, Message } = require('azure-iot-device');
  const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
  const transport = { mqtt: Mqtt, mqttws: MqttWs }[values.transport];
  if (!transport) throw new Error(`unknown transport ${values.transport}`);
  const client = Client.fromConnectionString(`HostName=${values.hub};DeviceId=${values['device-id']};x509=true`, transport);
  client.setOptions({ cert: fs.readFileSync(values.cert, 'utf8'), key: fs.readFileSync(values.key, 'utf8') });
  client.on('error', fail);
  await must((cb) => client.open(cb));
  await must((cb) => client.sendEvent(new Message(values.text), cb));
  await must((cb) => client.close(cb));
  finish({ sent: true });
}

const [command, ...rest] = process.argv.slice(2);
const commands = { 'twin-null': twinNull, 'twin-etag': twinEtag, scopes, x509 };
if (!commands[command]) fail(new Error(`unknown command ${command}`));
else commands[command](rest).catch(fail);
