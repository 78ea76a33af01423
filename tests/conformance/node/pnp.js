#!/usr/bin/env node
// IoT Plug and Play with the real Node.js SDKs, driven by test_pnp.py:
//
//   node pnp.js --device-cs DEVICE_CONNECTION_STRING --model DTMI
//
// A device (azure-iot-device over MQTT, `modelId` set in its options) connects, reports a
// property of a component and answers the commands `reboot` and `thermostat1*getMaxMinReport`;
// the service's DigitalTwinClient (azure-iothub, $IRONHUB_CONNECTION_STRING) reads the digital
// twin, updates it with a JSON Patch, waits for the device to get the desired patch, and invokes
// a root and a component command. Prints one JSON object with what each call returned and exits
// 0, or prints {"error": {...}} and exits 1. Trust comes from NODE_EXTRA_CA_CERTS=<ca.pem>.
'use strict';

const { parseArgs } = require('node:util');
const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { DigitalTwinClient, IoTHubTokenCredentials } = require('azure-iothub');

const DEADLINE_MS = 50000;

function fail(err) {
  const out = { class: err && err.constructor ? err.constructor.name : typeof err, name: err && err.name, message: err && err.message };
  if (err && err.statusCode !== undefined) out.statusCode = err.statusCode;
  if (err && err.body !== undefined) out.body = err.body;
  process.stdout.write(JSON.stringify({ error: out }) + '\n');
  process.exit(1);
}

setTimeout(() => fail(Object.assign(new Error(`no answer within ${DEADLINE_MS} ms`), { name: 'ScriptTimeout' })), DEADLINE_MS).unref();
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

/// The fields of an ms-rest-js answer, without its raw `_response`.
function plain(response) {
  const out = {};
  for (const [k, v] of Object.entries(response || {})) {
    if (k !== '_response') out[k] = v;
  }
  const raw = response && response._response && response._response.bodyAsText;
  if (raw) out.body = JSON.parse(raw);
  return out;
}

function step(what) {
  process.stderr.write(`pnp.js: ${what}\n`);
}

async function main() {
  const { values } = parseArgs({ options: { 'device-cs': { type: 'string' }, model: { type: 'string' } } });
  const device = Client.fromConnectionString(values['device-cs'], Mqtt);
  device.setOptions({ modelId: values.model });
  step('device.open');
  await device.open();
  step('twin = device.getTwin');
  const twin = await device.getTwin();
  await new Promise((resolve, reject) => twin.properties.reported.update(
    { serialNumber: 'SN-node', thermostat1: { __t: 'c', maxTempSinceLastReboot: 40 } },
    (err) => (err ? reject(err) : resolve())));
  const desired = new Promise((resolve) => twin.on('properties.desired', (patch) => {
    if (patch.thermostat1) resolve(patch);
  }));
  const calls = [];
  for (const name of ['reboot', 'thermostat1*getMaxMinReport']) {
    device.onDeviceMethod(name, (request, response) => {
      calls.push([request.methodName, request.payload]);
      response.send(202, { ran: request.methodName }, () => {});
    });
  }

  const service = new DigitalTwinClient(new IoTHubTokenCredentials(process.env.IRONHUB_CONNECTION_STRING));
  const deviceId = /DeviceId=([^;]+)/.exec(values['device-cs'])[1];
  step('got = service.getDigitalTwin');
  const got = await service.getDigitalTwin(deviceId);
  // The callback form: it passes the HTTP response, whose headers carry the new ETag.
  const updated = await new Promise((resolve, reject) => service.updateDigitalTwin(deviceId, [
    { op: 'add', path: '/thermostat1/targetTemperature', value: 25 },
  ], (err, _result, response) => (err ? reject(err) : resolve({
    status: response.status, etag: response.headers.get('etag'), location: response.headers.get('location'),
  }))));
  step('patch = desired;');
  const patch = await desired;
  step('root = service.invokeCommand');
  const root = await service.invokeCommand(deviceId, 'reboot', { delay: 2 }, { responseTimeoutInSeconds: 10 });
  const component = await service.invokeComponentCommand(deviceId, 'thermostat1', 'getMaxMinReport', 'now',
    { connectTimeoutInSeconds: 5, responseTimeoutInSeconds: 10 });
  await device.close();
  process.stdout.write(JSON.stringify({
    digitalTwin: plain(got),
    update: updated,
    desiredPatch: patch,
    root: plain(root),
    component: plain(component),
    calls,
  }) + '\n');
  process.exit(0);
}

main().catch(fail);
