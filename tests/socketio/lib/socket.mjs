// Waits on a socket.io-client socket, shared by the suites.

/** Resolves once `s` is connected (at once if it is); rejects on its `connect_error`. */
export function connected(s) {
  return new Promise((resolve, reject) => {
    if (s.connected) return resolve();
    s.once('connect', resolve);
    s.once('connect_error', reject);
  });
}

/** Resolves with the error of `s`'s `connect_error`; rejects if it connects instead. */
export function connectError(s) {
  return new Promise((resolve, reject) => {
    s.once('connect', () => reject(new Error('connected, but a connect_error was expected')));
    s.once('connect_error', resolve);
  });
}
