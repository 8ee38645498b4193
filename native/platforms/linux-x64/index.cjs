// The folder that holds mm.node and the libraries and ggml backends it loads.
const { join } = require('node:path');
module.exports = { dir: __dirname, addon: join(__dirname, 'mm.node') };
