#!/usr/bin/env node
// Module identities through the real Node.js `azure-iothub` Registry, driven by
// test_modules.py. Prints one JSON object as `output.js` says. The service connection string
// is $IRONHUB_CONNECTION_STRING; trust comes from NODE_EXTRA_CA_CERTS=<ca.pem>.
//
//   node modules.js lifecycle --device-id D --module-id M
//       addModule({deviceId: D, moduleId: M}), getModule, getModulesOnDevice, updateModule
//       with a stale etag (its error), removeModule, then getModule again (its error).
'use strict';

const { parseArgs } = require('node:util');

const { errorJson, finish, fail } = require('./output');

function registry() {
  const cs = process.env.IRONHUB_CONNECTION_STRING;
  if (!cs) throw new Error('IRONHUB_CONNECTION_STRING is not set');
  return require('azure-iothub').Registry.fromConnectionString(cs);
}

async function caught(promise) {
  try {
    await promise;
    return null;
  } catch (err) {
    return errorJson(err);
  }
}

async function lifecycle(argv) {
  const { values } = parseArgs({ args: argv, options: { 'device-id': { type: 'string' }, 'module-id': { type: 'string' } } });
  const deviceId = values['device-id'];
  const moduleId = values['module-id'];
  const reg = registry();
  await reg.addModule({ deviceId, moduleId });
  const got = (await reg.getModule(deviceId, moduleId)).responseBody;
  const list = (await reg.getModulesOnDevice(deviceId)).responseBody;
  const stale = await caught(reg.updateModule({ ...got, etag: 'stale' }));
  const added = await caught(reg.addModule({ deviceId, moduleId }));
  await reg.removeModule(deviceId, moduleId);
  const gone = await caught(reg.getModule(deviceId, moduleId));
  finish({ got, list, stale, added, gone });
}

const commands = { lifecycle };
const [command, ...rest] = process.argv.slice(2);
if (!commands[command]) fail(new Error(`unknown command ${command}`));
commands[command](rest).catch(fail);
