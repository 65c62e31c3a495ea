// Preloaded (`node --import`) into server-everything by the bench: its Streamable HTTP
// transport calls `app.listen(PORT)` with no host, i.e. on every interface, and has no option
// against it. This wraps net.Server.prototype.listen so that a listen call for a port binds
// 127.0.0.1 only.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    const rest = args.slice(1);
    if (typeof rest[0] === 'string') rest.shift(); // a host given anyway is replaced too
    return listen.call(this, Number(args[0]), '127.0.0.1', ...rest);
  }
  if (args[0] && typeof args[0] === 'object' && 'port' in args[0]) {
    return listen.call(this, { ...args[0], host: '127.0.0.1' }, ...args.slice(1));
  }
  return listen.apply(this, args);
};
