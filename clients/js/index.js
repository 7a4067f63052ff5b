// The ES module entry of @vestnik/pushler: runs pushler.js (which also defines the global
// `PushlerClient`, exactly as the <script> tag does) and re-exports the class as the default export,
// the way the Pushler docs import it (`import PushlerClient from '@pushler/js'`), and the recovery
// plugin for stock pusher-js (`VestnikRecovery`). It adds no behaviour of its own.
import './pushler.js';
import './vestnik-recovery.js';

const PushlerClient = globalThis.PushlerClient;
/** The recovery plugin for stock pusher-js 8 and Laravel Echo (vestnik-recovery.js). */
const VestnikRecovery = globalThis.VestnikRecovery;

export { PushlerClient, VestnikRecovery };
export default PushlerClient;
