<?php

// PushlerClient: the PushlerRu\PushlerClient API (trigger, channel authorization, channel queries,
// webhooks) over the signed Pusher HTTP API that Vestnik speaks, so code written for Pushler's PHP SDK
// runs against Vestnik after changing the constructor options. It signs every request exactly as
// Pusher does (HMAC-SHA256 over method, path and sorted query), finds the app by its key when no
// app_id is given (Vestnik accepts the key in place of the id), and turns every non-200 answer into an
// ApiException carrying the broker's JSON error. It never sends or logs the secret, and never retries
// a trigger on its own (a retried trigger could deliver an event twice).

declare(strict_types=1);

namespace PushlerRu;

/** The Pushler-compatible server client for Vestnik. */
class PushlerClient
{
    /** Vestnik's default listen address (`vestnik` with no flags serves 0.0.0.0:6001 over HTTP). */
    public const DEFAULT_HOST = '127.0.0.1';
    public const DEFAULT_PORT = 6001;
    public const DEFAULT_SCHEME = 'http';

    /** Seconds an API call may take before curl gives up. */
    public const DEFAULT_TIMEOUT = 10;

    /**
     * Channel names by the Pusher rule (docs/protocol.md "Channels"): the charset
     * `[A-Za-z0-9_\-=@,.;]`, and `#` only as the reserved `#server-to-user-{id}` prefix.
     */
    private const CHANNEL_RE = '/\A(?:#server-to-user-)?[-a-zA-Z0-9_=@,.;]+\z/';

    /** Longest channel name (Pusher's limit, `MAX_CHANNEL_NAME_LEN` in vestnik-protocol limits.rs). */
    private const MAX_CHANNEL_NAME_LEN = 200;

    /** Socket ids as every official SDK accepts them (pusher-http-php `validate_socket_id`). */
    private const SOCKET_ID_RE = '/\A\d+\.\d+\z/';

    /** The Pusher webhook headers (B.13 of the protocol reference). */
    private const WEBHOOK_KEY_HEADER = 'x-pusher-key';
    private const WEBHOOK_SIGNATURE_HEADER = 'x-pusher-signature';

    /** @var string */
    private $key;

    /** @var string */
    private $secret;

    /** @var array{host: string, port: int, scheme: string, app_id: ?string, timeout: int} */
    private $options;

    /**
     * @param string $key    the app key (also used in place of the app id when `app_id` is not given)
     * @param string $secret the app secret
     * @param array  $options `host`, `port`, `scheme` (`http` or `https`), `app_id`, `timeout` (seconds)
     */
    public function __construct(string $key, string $secret, array $options = [])
    {
        if ($key === '' || $secret === '') {
            throw new \InvalidArgumentException('PushlerClient needs a non-empty key and secret');
        }
        $scheme = (string) ($options['scheme'] ?? self::DEFAULT_SCHEME);
        if ($scheme !== 'http' && $scheme !== 'https') {
            throw new \InvalidArgumentException("scheme must be http or https, not {$scheme}");
        }
        $appId = isset($options['app_id']) ? (string) $options['app_id'] : null;
        $this->key = $key;
        $this->secret = $secret;
        $this->options = [
            'host' => (string) ($options['host'] ?? self::DEFAULT_HOST),
            'port' => (int) ($options['port'] ?? ($scheme === 'https' ? 443 : self::DEFAULT_PORT)),
            'scheme' => $scheme,
            'app_id' => $appId === '' ? null : $appId,
            'timeout' => (int) ($options['timeout'] ?? self::DEFAULT_TIMEOUT),
        ];
    }

    // ------------------------------------------------------------------------------------------
    // Events

    /**
     * Triggers `$event` on one channel (a string) or several (an array of strings).
     *
     * @param string|string[]   $channels
     * @param array|string      $data     an array is JSON-encoded; a string is sent as it is
     * @param string|array|null $params   a socket id to exclude, or `['socket_id' => …, 'info' => …]`
     * @return array the broker's decoded answer (`[]`, or `['channels' => …]` when `info` was asked)
     */
    public function trigger($channels, string $event, $data, $params = null): array
    {
        $channels = is_array($channels) ? array_values($channels) : [$channels];
        if ($channels === []) {
            throw new \InvalidArgumentException('trigger needs at least one channel');
        }
        foreach ($channels as $channel) {
            $this->validateChannel($channel);
        }
        $body = ['name' => $event, 'data' => $this->encodeData($data)];
        if (count($channels) === 1) {
            $body['channel'] = $channels[0];
        } else {
            $body['channels'] = $channels;
        }
        $body += $this->eventParams($params);
        return $this->post('/events', $body);
    }

    /**
     * Triggers several events in one call. Each item has `channel`, `name` (or `event`), `data`, and
     * optionally `socket_id` and `info`.
     *
     * @param array[] $batch
     * @return array the broker's decoded answer
     */
    public function triggerBatch(array $batch): array
    {
        $items = [];
        foreach ($batch as $i => $item) {
            if (!is_array($item) || !isset($item['channel'])) {
                throw new \InvalidArgumentException("batch item {$i} needs a channel");
            }
            $name = $item['name'] ?? $item['event'] ?? null;
            if (!is_string($name) || $name === '') {
                throw new \InvalidArgumentException("batch item {$i} needs a name");
            }
            $this->validateChannel($item['channel']);
            $out = [
                'channel' => $item['channel'],
                'name' => $name,
                'data' => $this->encodeData($item['data'] ?? ''),
            ];
            $out += $this->eventParams(array_intersect_key($item, ['socket_id' => 1, 'info' => 1]));
            $items[] = $out;
        }
        return $this->post('/batch_events', ['batch' => $items]);
    }

    // ------------------------------------------------------------------------------------------
    // Channel authorization (the app's auth endpoint calls these)

    /**
     * Signs a private channel subscription. Returns `['auth' => 'key:signature']`, which the auth
     * endpoint passes to `json_encode`.
     */
    public function authorizeChannel(string $channelName, string $socketId, ?string $channelData = null): array
    {
        $this->validateChannel($channelName);
        $this->validateSocketId($socketId);
        $toSign = $socketId . ':' . $channelName;
        if ($channelData !== null) {
            $toSign .= ':' . $channelData;
        }
        $auth = ['auth' => $this->key . ':' . $this->hmac($toSign)];
        if ($channelData !== null) {
            $auth['channel_data'] = $channelData;
        }
        return $auth;
    }

    /**
     * Signs a presence channel subscription for `$userId` with `$userInfo` (shown to the other
     * members). Returns `['auth' => …, 'channel_data' => …]` for `json_encode`.
     *
     * @param string|int $userId
     */
    public function authorizePresenceChannel(string $channelName, string $socketId, $userId, array $userInfo = []): array
    {
        if ((string) $userId === '') {
            throw new \InvalidArgumentException('presence authorization needs a user id');
        }
        $member = ['user_id' => (string) $userId];
        if ($userInfo !== []) {
            $member['user_info'] = $userInfo;
        }
        return $this->authorizeChannel($channelName, $socketId, $this->json($member));
    }

    /**
     * Signs a user sign-in (`pusher:signin`). `$userData` must have a non-empty `id`. Returns
     * `['auth' => …, 'user_data' => …]`.
     */
    public function authenticateUser(string $socketId, array $userData): array
    {
        $this->validateSocketId($socketId);
        if (!isset($userData['id']) || (string) $userData['id'] === '') {
            throw new \InvalidArgumentException('user data needs a non-empty id');
        }
        $json = $this->json($userData);
        return ['auth' => $this->key . ':' . $this->hmac("{$socketId}::user::{$json}"), 'user_data' => $json];
    }

    // ------------------------------------------------------------------------------------------
    // Queries

    /**
     * Occupied channels: `['channels' => ['name' => [attributes…], …]]`.
     *
     * @param array $params `filter_by_prefix`, `info` (e.g. `user_count` with a `presence-` prefix)
     */
    public function getChannels(array $params = []): array
    {
        return $this->get('/channels', $params);
    }

    /**
     * One channel: `['occupied' => bool, …]`, plus what `info` asked for.
     *
     * @param array $params `info` (`user_count`, `subscription_count`, `cache`)
     */
    public function getChannelInfo(string $channel, array $params = []): array
    {
        $this->validateChannel($channel);
        return $this->get('/channels/' . rawurlencode($channel), $params);
    }

    /**
     * The users of a presence channel: a list of `['id' => …]`.
     */
    public function getPresenceUsers(string $channel): array
    {
        $this->validateChannel($channel);
        $answer = $this->get('/channels/' . rawurlencode($channel) . '/users', []);
        return $answer['users'] ?? [];
    }

    /**
     * A page of a channel's history (Vestnik's history API, see docs/recovery.md), oldest first:
     * `['epoch' => …, 'first_offset' => …, 'last_offset' => …, 'events' => [['offset' => …,
     * 'event' => …, 'data' => …, 'published_at_ms' => …], …], 'next_after' => …, 'has_more' => …]`.
     * For the next page pass `['epoch' => $page['epoch'], 'after' => $page['next_after']]`.
     *
     * A position the history no longer has throws `ApiException` 409 whose JSON body (`getBody()`)
     * has `reason` (`epoch_changed` or `too_old`) and the channel's current `epoch`,
     * `first_offset` and `last_offset`: reload your state, then read on from there.
     *
     * @param array $params `after` (an offset, with its `epoch`), `epoch`, `limit` (1 to 1000, default 100)
     */
    public function getChannelHistory(string $channel, array $params = []): array
    {
        $this->validateChannel($channel);
        return $this->get('/channels/' . rawurlencode($channel) . '/history', $params);
    }

    /** Closes every connection signed in as `$userId`. */
    public function terminateUserConnections(string $userId): array
    {
        if ($userId === '') {
            throw new \InvalidArgumentException('terminateUserConnections needs a user id');
        }
        return $this->post('/users/' . rawurlencode($userId) . '/terminate_connections', new \stdClass());
    }

    // ------------------------------------------------------------------------------------------
    // Webhooks

    /**
     * Verifies a webhook request and returns its decoded body (`['time_ms' => …, 'events' => […]]`).
     * `$headers` may use any letter case (e.g. from `getallheaders()`).
     *
     * @throws WebhookException when the key is not this app's, the signature does not match, or the
     *                          body is not a webhook
     */
    public function verifyWebhook(array $headers, string $body): array
    {
        $lower = [];
        foreach ($headers as $name => $value) {
            $lower[strtolower((string) $name)] = is_array($value) ? (string) reset($value) : (string) $value;
        }
        $key = $lower[self::WEBHOOK_KEY_HEADER] ?? null;
        $signature = $lower[self::WEBHOOK_SIGNATURE_HEADER] ?? null;
        if ($key === null || $signature === null) {
            throw new WebhookException('webhook without X-Pusher-Key or X-Pusher-Signature');
        }
        if (!hash_equals($this->key, $key)) {
            throw new WebhookException('webhook for another app key');
        }
        if (!hash_equals($this->hmac($body), strtolower($signature))) {
            throw new WebhookException('webhook signature does not match');
        }
        $decoded = json_decode($body, true);
        if (!is_array($decoded) || !isset($decoded['events']) || !is_array($decoded['events'])) {
            throw new WebhookException('webhook body is not {"time_ms":…,"events":[…]}');
        }
        return $decoded;
    }

    /** The `X-Pusher-Signature` a webhook body must carry. */
    public function webhookSignature(string $body): string
    {
        return $this->hmac($body);
    }

    // ------------------------------------------------------------------------------------------
    // Signing

    /**
     * The query parameters of a signed request, `auth_signature` included: the normalised `$params`
     * (see normaliseQuery) plus the auth parameters, exactly the strings that were signed, so the
     * caller sends these and nothing else. Public so that tests can check it against the documented
     * vectors with a fixed timestamp.
     *
     * @param string $path the full signed path as it is sent (percent-encoded), e.g. `/apps/3/events`
     * @return array<string, string>
     */
    public function signedQuery(string $method, string $path, array $params, string $body, ?int $timestamp = null): array
    {
        $params = self::normaliseQuery($params);
        $params['auth_key'] = $this->key;
        $params['auth_timestamp'] = (string) ($timestamp ?? time());
        $params['auth_version'] = '1.0';
        if ($body !== '') {
            $params['body_md5'] = md5($body);
        }
        unset($params['auth_signature']);
        ksort($params);
        $pairs = [];
        foreach ($params as $k => $v) {
            $pairs[] = $k . '=' . $v;
        }
        $params['auth_signature'] = $this->hmac(strtoupper($method) . "\n" . $path . "\n" . implode('&', $pairs));
        return $params;
    }

    /** The path of the app's API: `/apps/{app_id}`, or `/apps/{key}` without an app id. */
    public function appPath(): string
    {
        return '/apps/' . rawurlencode($this->options['app_id'] ?? $this->key);
    }

    /**
     * The query as it is both signed and sent: lower-case keys (the broker lower-cases them before
     * checking the signature), a list such as `info => ['user_count', 'subscription_count']` joined
     * with commas (the API's form, `info=user_count,subscription_count`), booleans as `true`/`false`,
     * every other value as a string, nulls dropped. Sending the raw array instead would put
     * `info[0]=…` on the wire, which is not what was signed.
     *
     * @return array<string, string>
     */
    public static function normaliseQuery(array $params): array
    {
        $out = [];
        foreach ($params as $k => $v) {
            if ($v === null) {
                continue;
            }
            if (is_array($v)) {
                $v = implode(',', array_map('strval', $v));
            } elseif (is_bool($v)) {
                $v = $v ? 'true' : 'false';
            }
            $out[strtolower((string) $k)] = (string) $v;
        }
        return $out;
    }

    // ------------------------------------------------------------------------------------------
    // Internals

    private function hmac(string $text): string
    {
        return hash_hmac('sha256', $text, $this->secret);
    }

    private function json($value): string
    {
        return json_encode($value, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
    }

    /** @param array|string|int|float|bool|null $data */
    private function encodeData($data): string
    {
        return is_string($data) ? $data : $this->json($data);
    }

    /** @param string|array|null $params */
    private function eventParams($params): array
    {
        if ($params === null) {
            return [];
        }
        if (is_string($params)) {
            $params = ['socket_id' => $params];
        }
        if (!is_array($params)) {
            throw new \InvalidArgumentException('the 4th trigger argument is a socket id or an array of params');
        }
        $out = [];
        if (isset($params['socket_id'])) {
            $this->validateSocketId((string) $params['socket_id']);
            $out['socket_id'] = (string) $params['socket_id'];
        }
        if (isset($params['info'])) {
            $out['info'] = is_array($params['info']) ? implode(',', $params['info']) : (string) $params['info'];
        }
        return $out;
    }

    private function validateChannel($channel): void
    {
        if (!is_string($channel) || strlen($channel) > self::MAX_CHANNEL_NAME_LEN || !preg_match(self::CHANNEL_RE, $channel)) {
            throw new \InvalidArgumentException('Invalid channel name ' . json_encode($channel));
        }
    }

    private function validateSocketId(string $socketId): void
    {
        if (!preg_match(self::SOCKET_ID_RE, $socketId)) {
            throw new \InvalidArgumentException('Invalid socket id ' . json_encode($socketId));
        }
    }

    /** @param array|\stdClass $body */
    private function post(string $subPath, $body): array
    {
        return $this->request('POST', $subPath, [], $this->json($body));
    }

    private function get(string $subPath, array $params): array
    {
        return $this->request('GET', $subPath, $params, '');
    }

    private function request(string $method, string $subPath, array $params, string $body): array
    {
        // $subPath comes with its variable segments already rawurlencoded: the broker checks the
        // signature over the path as sent, and decodes the segments itself.
        $path = $this->appPath() . $subPath;
        $query = http_build_query($this->signedQuery($method, $path, $params, $body), '', '&', PHP_QUERY_RFC3986);
        $o = $this->options;
        $url = "{$o['scheme']}://{$o['host']}:{$o['port']}{$path}?{$query}";
        $curl = curl_init($url);
        if ($curl === false) {
            throw new PushlerException('curl_init failed');
        }
        $headers = ['Content-Type: application/json', 'X-Pusher-Library: vestnik-pushler-php'];
        curl_setopt_array($curl, [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_TIMEOUT => $o['timeout'],
        ]);
        if ($method === 'POST') {
            curl_setopt($curl, CURLOPT_POSTFIELDS, $body);
        }
        $response = curl_exec($curl);
        $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        $curlError = curl_error($curl);
        curl_close($curl);
        if ($response === false) {
            throw new PushlerException("Vestnik API call {$method} {$path} failed: {$curlError}");
        }
        $decoded = json_decode((string) $response, true);
        if ($status !== 200) {
            $error = is_array($decoded) && isset($decoded['error']) ? (string) $decoded['error'] : null;
            throw new ApiException($status, (string) $response, $error);
        }
        if (!is_array($decoded)) {
            throw new PushlerException("Vestnik API call {$method} {$path} answered 200 without a JSON object");
        }
        return $decoded;
    }
}
