#!/usr/bin/env node
// A TPM device with the real Node.js Azure IoT SDKs, driven one call at a time by
// test_dps_amqp_tpm.py. The device's TPM is a simulator reached over TCP with the Microsoft
// simulator protocol: tss.js's Tpm(true, HOST, PORT) (its platform port is PORT + 1).
//
// Prints one JSON object and exits 0, or {"error": {...}} and exits 1 (see output.js).
//
//   node dps_tpm.js keys --tpm-host H --tpm-port P
//       azure-iot-security-tpm's TpmSecurityClient: getEndorsementKey and getStorageRootKey
//       (creating and persisting them, as on a device's first run), base64.
//   node dps_tpm.js register --host H --scope S --id R --tpm-host H --tpm-port P [--transport amqp|amqpws]
//       ProvisioningDeviceClient.create(H, S, new Amqp()|new AmqpWs(),
//       new TpmSecurityClient(R, tpm)).register(cb): prints {"result"}, the registration
//       operation's result (a TPM registration hands on the whole operation, its
//       registrationState inside, where other attestations hand on the state alone).
//   node dps_tpm.js send --hub H --device-id D --text T --tpm-host H --tpm-port P [--transport amqp|mqtt]
//       azure-iot-device's Client.fromAuthenticationProvider(
//       TpmAuthenticationProvider.fromTpmSecurityClient(D, H, client), Amqp|Mqtt): open,
//       sendEvent(new Message(T)), close; every token is signed by the TPM.
'use strict';

const { parseArgs } = require('node:util');

const { finish, fail } = require('./output');

const TPM_OPTIONS = {
  'tpm-host': { type: 'string' },
  'tpm-port': { type: 'string' },
};

function securityClient(values, registrationId) {
  const { Tpm } = require('tss.js');
  const { TpmSecurityClient } = require('azure-iot-security-tpm');
  const tpm = new Tpm(true, values['tpm-host'], Number(values['tpm-port']));
  return new TpmSecurityClient(registrationId, tpm);
}

function keys(argv) {
  const { values } = parseArgs({ args: argv, options: TPM_OPTIONS });
  const client = securityClient(values, 'unused');
  client.getEndorsementKey((err, ek) => {
    if (err) return fail(err);
    client.getStorageRootKey((err2, srk) => {
      if (err2) return fail(err2);
      finish({ endorsementKey: ek.toString('base64'), storageRootKey: srk.toString('base64') });
    });
  });
}

function register(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...TPM_OPTIONS,
      transport: { type: 'string', default: 'amqp' },
      host: { type: 'string' },
      scope: { type: 'string' },
      id: { type: 'string' },
    },
  });
  const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
  const amqp = require('azure-iot-provisioning-device-amqp');
  let transport;
  switch (values.transport) {
    case 'amqp': transport = new amqp.Amqp(); break;
    case 'amqpws': transport = new amqp.AmqpWs(); break;
    default: throw new Error(`unknown transport ${values.transport}`);
  }
  const security = securityClient(values, values.id);
  const client = ProvisioningDeviceClient.create(values.host, values.scope, transport, security);
  client.register((err, result) => (err ? fail(err) : finish({ result })));
}

function send(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...TPM_OPTIONS,
      hub: { type: 'string' },
      'device-id': { type: 'string' },
      text: { type: 'string' },
      transport: { type: 'string', default: 'amqp' },
    },
  });
  const { Client, Message } = require('azure-iot-device');
  const { TpmAuthenticationProvider } = require('azure-iot-security-tpm');
  const protocol = values.transport === 'mqtt'
    ? require('azure-iot-device-mqtt').Mqtt
    : require('azure-iot-device-amqp').Amqp;
  const deviceId = values['device-id'];
  const provider = TpmAuthenticationProvider.fromTpmSecurityClient(
    deviceId, values.hub, securityClient(values, deviceId));
  const client = Client.fromAuthenticationProvider(provider, protocol);
  client.open((err) => {
    if (err) return fail(err);
    client.sendEvent(new Message(values.text), (err2, result) => {
      if (err2) return fail(err2);
      client.close(() => finish({ result: result && result.constructor.name }));
    });
  });
}

const [command, ...rest] = process.argv.slice(2);
switch (command) {
  case 'keys': keys(rest); break;
  case 'register': register(rest); break;
  case 'send': send(rest); break;
  default: fail(new Error(`unknown command ${command}`));
}
