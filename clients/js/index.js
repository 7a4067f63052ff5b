// The ES module entry of @vestnik/pushler: runs pushler.js (which also defines the global
// `PushlerClient`, exactly as the <script> tag does) and re-exports the class as the default export,
// the way the Pushler docs import it (`import PushlerClient from '@pushler/js'`). It adds no
// behaviour of its own.
import './pushler.js';

const PushlerClient = globalThis.PushlerClient;

export { PushlerClient };
export default PushlerClient;
