<?php

// The PHP client's unit tests: signatures against the reference test vectors (Pusher docs and the
// pusher-http-php test suite), the shapes authorizeChannel returns, input checks, webhook
// verification and the errors of HTTP calls. A tiny runner with plain assertions (no PHPUnit, no
// Composer): `php clients/php/tests/run.php`. It prints one line per test, a closing
// "N passed, M failed" line, and exits non-zero when anything failed. Tests that talk to a broker are
// in tests/js/test/pushler-php.test.js; the only network use here is a refused connection on a port
// nobody listens on.

declare(strict_types=1);

spl_autoload_register(function (string $class): void {
    $prefix = 'PushlerRu\\';
    if (strncmp($class, $prefix, strlen($prefix)) === 0) {
        require __DIR__ . '/../src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    }
});

use PushlerRu\ApiException;
use PushlerRu\PushlerClient;
use PushlerRu\PushlerException;
use PushlerRu\WebhookException;

$tests = [];

function test(string $name, callable $fn): void
{
    $GLOBALS['tests'][$name] = $fn;
}

function assertSame($expected, $actual, string $what = ''): void
{
    if ($expected !== $actual) {
        throw new \Exception(($what !== '' ? "$what: " : '') . 'expected ' . var_export($expected, true)
            . ', got ' . var_export($actual, true));
    }
}

function assertThrows(string $class, callable $fn, string $what = ''): \Throwable
{
    try {
        $fn();
    } catch (\Throwable $e) {
        if ($e instanceof $class) {
            return $e;
        }
        throw new \Exception("$what: expected $class, got " . get_class($e) . ': ' . $e->getMessage());
    }
    throw new \Exception("$what: expected $class, nothing was thrown");
}

// C.1: the Pusher docs' worked examples.
const DOCS_KEY = '278d425bdf160c739803';
const DOCS_SECRET = '7ad3773142a6692b25b8';

test('private channel auth matches the Pusher docs vector', function () {
    $c = new PushlerClient(DOCS_KEY, DOCS_SECRET);
    $auth = $c->authorizeChannel('private-foobar', '1234.1234');
    assertSame(['auth' => DOCS_KEY . ':58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4'], $auth);
});

test('presence auth signs the channel_data it returns (docs vector, Mr. Channels)', function () {
    $c = new PushlerClient(DOCS_KEY, DOCS_SECRET);
    $data = '{"user_id":10,"user_info":{"name":"Mr. Channels"}}';
    $auth = $c->authorizeChannel('presence-foobar', '1234.1234', $data);
    assertSame(DOCS_KEY . ':31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80', $auth['auth']);
    assertSame($data, $auth['channel_data']);
});

test('authorizePresenceChannel builds channel_data with a string user_id and user_info', function () {
    $c = new PushlerClient(DOCS_KEY, DOCS_SECRET);
    $auth = $c->authorizePresenceChannel('presence-room', '1.2', 67890, ['name' => 'Анна']);
    assertSame('{"user_id":"67890","user_info":{"name":"Анна"}}', $auth['channel_data']);
    $expected = hash_hmac('sha256', '1.2:presence-room:' . $auth['channel_data'], DOCS_SECRET);
    assertSame(DOCS_KEY . ':' . $expected, $auth['auth']);
    $plain = $c->authorizePresenceChannel('presence-room', '1.2', 'u1');
    assertSame('{"user_id":"u1"}', $plain['channel_data'], 'no user_info');
    assertThrows(\InvalidArgumentException::class, fn () => $c->authorizePresenceChannel('presence-room', '1.2', ''), 'empty id');
});

test('user authentication matches the Pusher docs vector', function () {
    $c = new PushlerClient(DOCS_KEY, DOCS_SECRET);
    $auth = $c->authenticateUser('1234.1234', ['id' => '12345']);
    assertSame(DOCS_KEY . ':4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba', $auth['auth']);
    assertSame('{"id":"12345"}', $auth['user_data']);
});

test('HTTP API signature matches the docs worked example (app 3, fixed timestamp)', function () {
    $c = new PushlerClient(DOCS_KEY, DOCS_SECRET, ['app_id' => '3']);
    assertSame('/apps/3', $c->appPath());
    $body = '{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}';
    $q = $c->signedQuery('POST', '/apps/3/events', [], $body, 1353088179);
    assertSame('ec365a775a4cd0599faeb73354201b6f', $q['body_md5']);
    assertSame('da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c', $q['auth_signature']);
    assertSame('1.0', $q['auth_version']);
});

// C.2: pusher-http-php's own unit tests.
test('pusher-http-php AuthorizeChannelTest vectors', function () {
    $c = new PushlerClient('thisisaauthkey', 'thisisasecret');
    assertSame(
        ['auth' => 'thisisaauthkey:751ccc12aeaa79d46f7c199bced5fa47527d3480b51fe61a0bd10438241bd52d'],
        $c->authorizeChannel('testing_pusher-php', '1.1')
    );
    $all = $c->authorizeChannel('-azAZ9_=@,.;', '45055.28877557');
    assertSame('thisisaauthkey:d1c20ad7684c172271f92c108e11b45aef07499b005796ae1ec5beb924f361c4', $all['auth'], 'punctuation');
    $data = $c->authorizeChannel('-azAZ9_=@,.;', '45055.28877557', '{"user_id": "123"}');
    assertSame('thisisaauthkey:3b3f1dcc4d7d2f95dd10ed05562397b3287b102d4cccfacbf30eed2f1ffa3d69', $data['auth'], 'channel_data');
});

test('pusher-http-php AuthenticateUserTest vectors', function () {
    $c = new PushlerClient('thisisaauthkey', 'thisisasecret');
    $a = $c->authenticateUser('12345.6789', ['id' => '123']);
    assertSame('thisisaauthkey:fc713f433deb729d0d96f9e26ef054285cbc3e833ebe840b93722a2fa16a6a18', $a['auth']);
    $b = $c->authenticateUser('12345.6789', ['id' => '123', 'name' => 'John Smith']);
    assertSame('thisisaauthkey:0dddb208b53c7649f3fbbb86254a6e1986bc6f8b566423ea690c9ca773497373', $b['auth']);
    assertThrows(\InvalidArgumentException::class, fn () => $c->authenticateUser('1.1', ['name' => 'x']), 'no id');
});

test('bad socket ids and channel names are refused before signing (pusher-http-php negatives)', function () {
    $c = new PushlerClient('thisisaauthkey', 'thisisasecret');
    foreach (['1.1:', ':1.1', ":\n1.1", "1.1\n:", '', 'abc', '1.'] as $socket) {
        assertThrows(\InvalidArgumentException::class, fn () => $c->authorizeChannel('private-x', $socket), json_encode($socket));
    }
    foreach (['test_channel:', ':test_channel', '', 'a b', "x\n"] as $channel) {
        assertThrows(\InvalidArgumentException::class, fn () => $c->authorizeChannel($channel, '1.1'), json_encode($channel));
        assertThrows(\InvalidArgumentException::class, fn () => $c->trigger($channel, 'e', []), 'trigger ' . json_encode($channel));
    }
    assertThrows(\InvalidArgumentException::class, fn () => $c->trigger([], 'e', []), 'no channels');
    assertThrows(\InvalidArgumentException::class, fn () => $c->trigger('ok', 'e', [], 'not-a-socket'), 'bad exclusion');
    assertThrows(\InvalidArgumentException::class, fn () => $c->triggerBatch([['channel' => 'ok']]), 'batch without name');
});

test('channel names follow the Pusher rule: charset, 200 characters, # only in #server-to-user-', function () {
    $c = new PushlerClient('key', 'secret');
    foreach (['#server-to-user-42', '-azAZ9_=@,.;', str_repeat('a', 200), 'presence-room@1'] as $ok) {
        assertSame('key:', substr($c->authorizeChannel($ok, '1.1')['auth'], 0, 4), $ok);
    }
    foreach (['#orders', 'a#b', '#server-to-user-', '#server-to-user-a b', str_repeat('a', 201), 'a/b', 'é', "a\0b"] as $bad) {
        assertThrows(\InvalidArgumentException::class, fn () => $c->authorizeChannel($bad, '1.1'), json_encode($bad));
        assertThrows(\InvalidArgumentException::class, fn () => $c->getChannelInfo($bad), 'getChannelInfo ' . json_encode($bad));
    }
});

test('authorizeChannel returns the array the cookbook json_encodes into {"auth": ...}', function () {
    $c = new PushlerClient('key_orders', 'secret_orders');
    $auth = $c->authorizeChannel('private-user-67890', '123.456');
    assertSame(['auth'], array_keys($auth));
    $json = json_decode(json_encode($auth), true);
    assertSame(
        'key_orders:' . hash_hmac('sha256', '123.456:private-user-67890', 'secret_orders'),
        $json['auth']
    );
});

test('signedQuery lower-level rules: sorted keys, no body_md5 for GET, arrays joined with commas', function () {
    $c = new PushlerClient('key', 'secret');
    $q = $c->signedQuery('get', '/apps/key/channels', ['info' => ['user_count'], 'filter_by_prefix' => 'presence-'], '', 1000);
    assertSame(false, isset($q['body_md5']), 'no body_md5');
    $toSign = "GET\n/apps/key/channels\nauth_key=key&auth_timestamp=1000&auth_version=1.0&filter_by_prefix=presence-&info=user_count";
    assertSame(hash_hmac('sha256', $toSign, 'secret'), $q['auth_signature']);
    // What is signed is what is sent: the array is already the comma-joined string in the result.
    assertSame('user_count', $q['info'], 'info normalised');
    $multi = $c->signedQuery('GET', '/apps/key/channels/x', ['INFO' => ['user_count', 'subscription_count'], 'skip' => null], '', 1000);
    assertSame('user_count,subscription_count', $multi['info'], 'lower-cased key, joined list');
    assertSame(false, array_key_exists('skip', $multi), 'null dropped');
    assertSame(false, strpos(http_build_query($multi), '%5B') !== false, 'no info[0]= on the wire');
    // The Python SDK's POST vector (pusher_tests/test_request.py), same rules.
    $p = $c->signedQuery('POST', '/some/obscure/api', [], '{"foo": "bar"}', 1000);
    assertSame('94232c5b8fc9272f6f73a1e36eb68fcf', $p['body_md5']);
    assertSame('e05fa4cafee86311746ee3981d5581a5e4e87c27bbab0aeb1059e2df5c90258b', $p['auth_signature']);
});

test('without app_id the API path uses the key; with it, the id', function () {
    assertSame('/apps/key_x', (new PushlerClient('key_x', 's'))->appPath());
    assertSame('/apps/1001', (new PushlerClient('key_x', 's', ['app_id' => 1001]))->appPath());
    assertThrows(\InvalidArgumentException::class, fn () => new PushlerClient('', 's'), 'empty key');
    assertThrows(\InvalidArgumentException::class, fn () => new PushlerClient('k', 's', ['scheme' => 'ftp']), 'scheme');
});

test('webhook verification: the pusher-http-php vectors pass, tampering fails', function () {
    $c = new PushlerClient('thisisaauthkey', 'thisisasecret');
    assertSame('40e0ad3b9aa49529322879e84de1aaaf18bde1efe839ca263d540cc865510d25', $c->webhookSignature('{"hello":"world"}'));
    $body = '{"time_ms":1530710011901,"events":[{"name":"client_event","channel":"private-my-channel","event":"client-event","data":"Unencrypted","socket_id":"240621.35780774"}]}';
    $sig = 'a19cab2af3ca1029257570395e78d5d675e9e700ca676d18a375a7083178df1c';
    $hook = $c->verifyWebhook(['X-Pusher-Key' => 'thisisaauthkey', 'X-Pusher-Signature' => $sig], $body);
    assertSame(1530710011901, $hook['time_ms']);
    assertSame('client_event', $hook['events'][0]['name']);
    // Header names in any case, as getallheaders() or a framework may give them.
    $c->verifyWebhook(['x-pusher-key' => ['thisisaauthkey'], 'x-pusher-signature' => strtoupper($sig)], $body);
    assertThrows(WebhookException::class, fn () => $c->verifyWebhook(['X-Pusher-Key' => 'thisisaauthkey', 'X-Pusher-Signature' => $sig], $body . ' '), 'tampered body');
    assertThrows(WebhookException::class, fn () => $c->verifyWebhook(['X-Pusher-Key' => 'other', 'X-Pusher-Signature' => $sig], $body), 'other key');
    assertThrows(WebhookException::class, fn () => $c->verifyWebhook(['X-Pusher-Key' => 'thisisaauthkey'], $body), 'no signature');
    $notHook = '{"hello":"world"}';
    assertThrows(WebhookException::class, fn () => $c->verifyWebhook(['X-Pusher-Key' => 'thisisaauthkey', 'X-Pusher-Signature' => $c->webhookSignature($notHook)], $notHook), 'not a webhook body');
});

test('a broker that cannot be reached raises PushlerException, not ApiException', function () {
    // Port 9 (discard) on loopback: nothing listens there on this machine, so curl is refused at once.
    $c = new PushlerClient('key', 'secret', ['host' => '127.0.0.1', 'port' => 9, 'timeout' => 2]);
    $e = assertThrows(PushlerException::class, fn () => $c->trigger('orders', 'e', ['a' => 1]), 'refused');
    assertSame(false, $e instanceof ApiException, 'not an API answer');
});

test('ApiException carries the status and the broker JSON error', function () {
    $e = new ApiException(413, '{"error":"Event data is over 10240 bytes","code":413}', 'Event data is over 10240 bytes');
    assertSame(413, $e->getStatus());
    assertSame('Event data is over 10240 bytes', $e->getError());
    assertSame('Vestnik API error 413: Event data is over 10240 bytes', $e->getMessage());
});

$passed = 0;
$failed = 0;
foreach ($tests as $name => $fn) {
    try {
        $fn();
        $passed++;
        echo "ok - $name\n";
    } catch (\Throwable $e) {
        $failed++;
        echo "not ok - $name\n  " . str_replace("\n", "\n  ", $e->getMessage()) . "\n";
    }
}
echo "php: $passed passed, $failed failed\n";
exit($failed === 0 ? 0 : 1);
