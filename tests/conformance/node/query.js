#!/usr/bin/env node
// IoT Hub queries with the real Node.js service SDK (`azure-iothub`), driven by test_query.py.
// The service connection string is $IRONHUB_CONNECTION_STRING; trust comes from
// NODE_EXTRA_CA_CERTS=<ca.pem>. Prints one JSON object as `output.js` says.
//
//   node query.js twins --sql Q [--page-size N]
//       Registry.createQuery(Q, N), then nextAsTwin() while hasMoreResults: prints the pages'
//       sizes, the device ids of the Twin objects, and each page's x-ms-item-type.
//   node query.js raw --sql Q [--page-size N]
//       The same with next(): prints the items as the hub sent them.
//   node query.js bad --sql Q
//       next() on a query the hub refuses: prints the error's class, status and body.
'use strict';

const { parseArgs } = require('node:util');

const { errorJson, finish, fail } = require('./output');

function registry() {
  const cs = process.env.IRONHUB_CONNECTION_STRING;
  if (!cs) throw new Error('IRONHUB_CONNECTION_STRING is not set');
  return require('azure-iothub').Registry.fromConnectionString(cs);
}

function options(argv) {
  const { values } = parseArgs({
    args: argv,
    options: { sql: { type: 'string' }, 'page-size': { type: 'string' } },
  });
  const size = values['page-size'] === undefined ? undefined : Number(values['page-size']);
  return { sql: values.sql, size };
}

async function pages(argv, asTwin) {
  const { sql, size } = options(argv);
  const query = registry().createQuery(sql, size);
  const out = { pageSizes: [], itemTypes: [], items: [] };
  while (query.hasMoreResults) {
    const result = asTwin ? await query.nextAsTwin() : await query.next();
    const items = result.result;
    out.pageSizes.push(items.length);
    out.itemTypes.push(result.message.headers['x-ms-item-type']);
    for (const item of items) {
      out.items.push(asTwin ? { deviceId: item.deviceId, isTwin: typeof item.get === 'function', reported: item.properties.reported } : item);
    }
    if (out.pageSizes.length > 50) throw new Error('paging does not end');
  }
  finish(out);
}

async function bad(argv) {
  const { sql } = options(argv);
  try {
    await registry().createQuery(sql).next();
  } catch (err) {
    finish(errorJson(err));
  }
  throw new Error('the query was answered');
}

const [command, ...rest] = process.argv.slice(2);
const commands = {
  twins: (a) => pages(a, true),
  raw: (a) => pages(a, false),
  bad,
};
if (!commands[command]) fail(new Error(`unknown command ${command}`));
commands[command](rest).catch(fail);
