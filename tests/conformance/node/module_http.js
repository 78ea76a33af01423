#!/usr/bin/env node
// A module on the real `azure-iot-device` ModuleClient over HTTPS (`azure-iot-device-http`),
// driven by test_module_http.py. Prints one JSON object as `output.js` says. The module's
// connection string is $MODULE_CONNECTION_STRING (with `GatewayHostName=`, where an IoT Edge
// module finds its Edge hub: the method client posts there); trust comes from
// NODE_EXTRA_CA_CERTS=<ca.pem>.
//
//   node module_http.js send --text T --message-id M
//       sendEvent of T (with property `n`), then sendEventBatch of T-1 and T-2.
//   node module_http.js invoke --device-id D [--module-id M] --method N
//       invokeMethod on device D (or its module M) with payload {"from": "http"}: the result,
//       or {"refused": <error>} when the hub refuses it.
'use strict';

const { parseArgs } = require('node:util');
const { ModuleClient, Message } = require('azure-iot-device');
const { Http } = require('azure-iot-device-http');

const { errorJson, finish, fail } = require('./output');

function message(text) {
  const m = new Message(text);
  m.properties.add('n', text);
  return m;
}

async function send(client, argv) {
  const { values } = parseArgs({ args: argv, options: { text: { type: 'string' }, 'message-id': { type: 'string' } } });
  const single = message(values.text);
  single.messageId = values['message-id'];
  const one = await client.sendEvent(single);
  const batch = await client.sendEventBatch([message(`${values.text}-1`), message(`${values.text}-2`)]);
  return { single: one.constructor.name, batch: batch.constructor.name };
}

async function invoke(client, argv) {
  const { values } = parseArgs({
    args: argv,
    options: { 'device-id': { type: 'string' }, 'module-id': { type: 'string' }, method: { type: 'string' } },
  });
  const params = { methodName: values.method, payload: { from: 'http' }, responseTimeoutInSeconds: 15, connectTimeoutInSeconds: 5 };
  try {
    const result = values['module-id']
      ? await client.invokeMethod(values['device-id'], values['module-id'], params)
      : await client.invokeMethod(values['device-id'], params);
    return { result };
  } catch (err) {
    return { refused: errorJson(err) };
  }
}

async function main() {
  const [command, ...argv] = process.argv.slice(2);
  const client = ModuleClient.fromConnectionString(process.env.MODULE_CONNECTION_STRING, Http);
  const commands = { send, invoke };
  if (!commands[command]) throw new Error(`unknown command ${command}`);
  const out = await commands[command](client, argv);
  await client.close();
  finish(out);
}

main().catch(fail);
