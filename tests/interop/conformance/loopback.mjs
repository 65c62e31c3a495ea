// Preload (`node --import ./loopback.mjs ...`) that keeps a Node program's servers on 127.0.0.1.
//
// Neither supergateway 4 (`app.listen(port)`) nor the conformance suite's mock servers
// (`app.listen(0)`) take a host option: both listen on every interface. This wraps
// net.Server.prototype.listen so that a listen call by port (with or without a host) binds
// 127.0.0.1, as ../everything.mjs does for server-everything.
//
// Unlike everything.mjs it cannot simply add the host argument: the conformance suite reads
// `server.address().port` right after `listen(0)`, which works only because a listen without a
// host binds synchronously; with a host, Node first resolves it (asynchronously), and address()
// is still null. So the socket is bound here, synchronously, on a TCP handle of Node's own
// tcp_wrap binding, and handed to listen() as a handle (the way cluster workers get theirs).
import net from 'node:net';

const { TCP, constants } = process.binding('tcp_wrap');
const originalListen = net.Server.prototype.listen;

function boundHandle(port) {
  const handle = new TCP(constants.SERVER);
  const err = handle.bind('127.0.0.1', port);
  if (err) {
    handle.close();
    return null;
  }
  return handle;
}

net.Server.prototype.listen = function listenOnLoopback(...args) {
  let port = null;
  let rest = args.slice(1);
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    port = Number(args[0]);
    if (typeof rest[0] === 'string') rest = rest.slice(1); // an explicit host is replaced too
  } else if (args[0] && typeof args[0] === 'object' && 'port' in args[0] && !args[0].path) {
    port = Number(args[0].port) || 0;
  } else if (args.length === 0 || typeof args[0] === 'function') {
    port = 0; // listen() without a port: a random one
    rest = args;
  }
  if (port === null) return originalListen.apply(this, args);
  const handle = boundHandle(port);
  if (handle === null) {
    // Taken (EADDRINUSE) or refused: let Node bind it the ordinary way to report the error.
    return originalListen.call(this, { port, host: '127.0.0.1' }, ...rest.filter((a) => typeof a === 'function'));
  }
  return originalListen.call(this, handle, ...rest);
};
