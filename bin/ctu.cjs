#!/usr/bin/env node
'use strict';
// The package's command. The TypeScript is compiled by `npm ci` (prepare) or `npm run build`.
require('../dist/src/cli.js');
