'use strict';
// Fixture sensor: one event per rule in ATTUNE_SENSOR_TRIGGERS, then idle until SIGTERM.
const http = require('http');
const https = require('https');

process.on('SIGTERM', () => process.exit(0));

const url = new URL(process.env.ATTUNE_API_URL.replace(/\/+$/, '') + '/api/v1/events');
const token = process.env.ATTUNE_API_TOKEN;
const sensor = process.env.ATTUNE_SENSOR_REF;

function post(body) {
  const data = JSON.stringify(body);
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(data),
        Authorization: 'Bearer ' + token,
      },
    }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 201 ? resolve() : reject(new Error('event not accepted: HTTP ' + res.statusCode))));
    });
    req.on('error', reject);
    req.end(data);
  });
}

(async () => {
  for (const rule of JSON.parse(process.env.ATTUNE_SENSOR_TRIGGERS || '[]')) {
    await post({
      trigger_ref: rule.trigger_ref,
      payload: { sensor, rule_ref: rule.ref, config: rule.config, language: 'node' },
      trigger_instance_id: 'rule_' + rule.id,
    });
  }
  console.log('node sensor ready');
  setInterval(() => {}, 1000);
})().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
