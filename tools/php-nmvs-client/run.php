<?php
// Runs the open-source PHP NMVS client `nextgen-tech/nmvs-client`, unchanged, against the SOAP
// services of an `openmvs demo`: every message it has (single pack and undos, bulk and G188,
// mixed bulk and G196, ping), each answer read with the client's own parsers and compared with
// what the national system should have said. Usage:
//
//   composer require nextgen-tech/nmvs-client     # once, beside this file
//   php run.php openmvs-data/demo.json             # on a fresh demo (it changes packs EXA...2xx-3xx)
//
// NMVS_AUTOLOAD names another autoloader than ./vendor/autoload.php. Exit status 0 when every
// answer was as expected.
declare(strict_types=1);

require getenv('NMVS_AUTOLOAD') ?: __DIR__ . '/vendor/autoload.php';

use GuzzleHttp\Client;
use GuzzleHttp\RequestOptions;
use NGT\NMVS\Certificate;
use NGT\NMVS\Connections\HttpConnection;
use NGT\NMVS\Contracts\Connection;
use NGT\NMVS\Credentials;
use NGT\NMVS\Handler;
use NGT\NMVS\Models\Pack;
use NGT\NMVS\Models\Product;
use NGT\NMVS\Requests as R;
use NGT\NMVS\SoftwareDetails;

if ($argc < 2) {
    fwrite(STDERR, "usage: php run.php DEMO_JSON\n");
    exit(2);
}
$demo = json_decode((string) file_get_contents($argv[1]), true);
$market = $demo['markets']['DE'];
$bySample = array_column($demo['samples'], null, 'batch');
$sample = $bySample['EXA2401'];
$role = fn(string $r) => array_values(array_filter($market['clients'], fn($c) => $c['role'] === $r))[0];
$login = fn(array $c, ?string $password = null) =>
    new Credentials($c['soap']['client_login_id'], $c['soap']['user_id'], $password ?? $c['client_secret']);

/**
 * The one change a vendor makes: the NMVS host and port of the client's endpoints become the
 * national system's (the paths stay), and the demo's CA is trusted.
 */
class OpenMvsConnection extends HttpConnection
{
    public function __construct(private string $base, private string $ca)
    {
    }

    public function setEndpoint(string $endpoint): Connection
    {
        return parent::setEndpoint((string) preg_replace('#^https://[^/]+#', $this->base, $endpoint));
    }

    protected function getClient(): Client
    {
        return $this->client ??= new Client([
            'curl' => $this->certificate->toCurlOptions(),
            RequestOptions::VERIFY => $this->ca,
            RequestOptions::HEADERS => ['Content-Type' => 'text/xml'],
        ]);
    }
}

final class Run
{
    public int $requests = 0;
    public int $failed = 0;
    private int $trx = 0;

    public function __construct(
        private Handler $handler,
        private SoftwareDetails $software,
        private array $sample,
    ) {
    }

    public function product(): Product
    {
        return (new Product())->setCode($this->sample['product_code'])->setCodeScheme('GTIN')
            ->setBatchId($this->sample['batch'])
            ->setExpiryDate(DateTime::createFromFormat('ymd', $this->sample['expiry']));
    }

    public function trx(): string
    {
        return sprintf('php-%d-%06d', getmypid(), ++$this->trx);
    }

    /** Sends `$req` as `$who`, reads the answer with the client's parser, compares the getters `$want` names. */
    public function send($req, Credentials $who, array $want, string $label, bool $newTrx = true)
    {
        $req->setCredentials($who)->setSoftwareDetails($this->software);
        if ($newTrx) {
            $req->setTransactionId($this->trx());
        }
        $this->requests++;
        try {
            $answer = $this->handler->handle($req);
        } catch (Throwable $e) {
            return $this->check(false, $label, 'threw ' . $e->getMessage());
        }
        $got = [];
        foreach (array_keys($want) as $getter) {
            $got[$getter] = $answer->{'get' . $getter}();
        }
        // Every answer echoes the ClientTrxId (a fault is read as an answer with no fields).
        if ($newTrx && $answer->getReturnCode() !== null && $answer->getClientTransactionId() !== $req->getTransactionId()) {
            $got['ClientTransactionId (echo)'] = $answer->getClientTransactionId();
        }
        $this->check($got == $want, $label, json_encode($got), $want);
        return $answer;
    }

    public function single(string $class, Credentials $who, string $serial, array $want, ?string $ref = null)
    {
        $class = "NGT\\NMVS\\Requests\\$class";
        $req = (new $class())->setProduct($this->product())->setPack(new Pack($serial));
        if ($ref !== null) {
            $req->setReferenceClientTransactionId($ref);
        }
        return $this->send($req, $who, $want, substr((new ReflectionClass($class))->getShortName(), 0, 4) . " $serial");
    }

    /** A bulk of `$serials`, then its G188 result until it is no longer pending; the packs as read. */
    public function bulk(string $class, Credentials $who, array $serials, array $wantPacks): void
    {
        $class = "NGT\\NMVS\\Requests\\$class";
        $req = (new $class())->setProduct($this->product());
        foreach ($serials as $serial) {
            $req->addPack(new Pack($serial));
        }
        $name = substr((new ReflectionClass($class))->getShortName(), 0, 4);
        $accepted = $this->send($req, $who, ['ReturnCode' => 'NMVS_SUCCESS'], "$name " . count($serials) . ' packs');
        if (!$accepted instanceof NGT\NMVS\Contracts\Response) {
            return;
        }
        $result = $this->poll(fn() => (new R\G188BulkOperationResultRequest())
            ->setReferenceNMVSTransactionId($accepted->getNMVSTransactionId()), $who);
        $got = array_map(fn($p) => [$p['serial_number'] ?? null, $p['state'] ?? null, $p['reason'] ?? null,
            $p['return_code'] ?? null], $result->getPacks());
        $this->check($got == $wantPacks, '  G188', json_encode($got), $wantPacks);
    }

    /**
     * Sends the result request `$make()` makes until the answer is no longer pending; the answers
     * that said pending are not counted as requests.
     */
    public function poll(callable $make, Credentials $who)
    {
        for ($i = 0; $i < 200; $i++) {
            $answer = $this->send($make(), $who, [], '', true);
            if ($answer->getReturnCode() !== 'NMVS_INFO_BLK_PENDING') {
                return $answer;
            }
            $this->requests--;
            usleep(50_000);
        }
        throw new RuntimeException('the result is still pending after 10 s');
    }

    /** Sends a request that carries no transaction (the ping) as it is, through the same connection. */
    public function handle($req)
    {
        $this->requests++;
        return $this->handler->handle($req);
    }

    public function check(bool $ok, string $label, string $got, ?array $want = null)
    {
        if ($label !== '' || !$ok) {
            printf("%s %-26s %s\n", $ok ? 'ok  ' : 'FAIL', $label, $got);
        }
        if (!$ok) {
            $this->failed++;
            if ($want !== null) {
                printf("     %-26s %s\n", 'expected', json_encode($want));
            }
        }
        return null;
    }
}

$run = new Run(
    (new Handler())->setConnection((new OpenMvsConnection($market['url'], $demo['ca_cert']))->setCertificate(new Certificate())),
    (new SoftwareDetails())->setSupplier('Example')->setName('Till')->setVersion('1.0'),
    $sample,
);
$pharmacy = $login($role('PHARMACY'));
$wholesaler = $login($role('WHOLESALER'));
// The demo lists the first serials of a batch; it holds 400 of this one, numbered on.
$prefix = (string) preg_replace('/\d+$/', '', $sample['serials'][0]);
$serial = fn(int $i) => sprintf('%s%08d', $prefix, $i + 1);
$S = 'NMVS_SUCCESS';
$active = ['ReturnCode' => $S, 'PackState' => 'ACTIVE', 'Reason' => null];

echo "== single pack: each message, a verify after it, its undo and a verify after that\n";
$run->single('G110SinglePackVerifyRequest', $pharmacy, $serial(200), $active);
$run->single('G110SinglePackVerifyRequest', $pharmacy, 'EXA99999999', ['ReturnCode' => 'NMVS_NC_PC_02', 'PackState' => 'UNKNOWN']);
$cases = [
    ['G120SinglePackDispenseRequest', 'G121SinglePackUndoDispenseRequest', 'SUPPLIED', $pharmacy],
    ['G130SinglePackDestroyRequest', null, 'DESTROYED', $pharmacy],
    ['G140SinglePackExportRequest', 'G141SinglePackUndoExportRequest', 'EXPORTED', $wholesaler],
    ['G150SinglePackSampleRequest', 'G151SinglePackUndoSampleRequest', 'SAMPLE', $pharmacy],
    ['G160SinglePackFreeSampleRequest', 'G161SinglePackUndoFreeSampleRequest', 'FREESAMPLE', $pharmacy],
    ['G170SinglePackLockRequest', 'G171SinglePackUndoLockRequest', 'LOCKED', $pharmacy],
    ['G180SinglePackStolenRequest', null, 'STOLEN', $pharmacy],
];
foreach ($cases as $i => [$set, $undo, $reason, $who]) {
    $sn = $serial(210 + $i);
    $done = $run->single($set, $who, $sn, ['ReturnCode' => $S, 'PackState' => 'INACTIVE', 'Reason' => $reason]);
    $run->single('G110SinglePackVerifyRequest', $pharmacy, $sn,
        ['ReturnCode' => 'NMVS_INFO_PCK_INACTIVE', 'PackState' => 'INACTIVE', 'Reason' => $reason]);
    if ($undo !== null) {
        $run->single($undo, $who, $sn, ['ReturnCode' => $S, 'PackState' => 'ACTIVE'], $done?->getClientTransactionId());
        $run->single('G110SinglePackVerifyRequest', $pharmacy, $sn, $active);
    }
}
echo "== the same ClientTrxId twice: the first answer again; a second dispense under a new one is refused\n";
$req = (new R\G120SinglePackDispenseRequest())->setProduct($run->product())->setPack(new Pack($serial(230)));
$req->setTransactionId($run->trx());
$first = $run->send($req, $pharmacy, ['ReturnCode' => $S, 'PackState' => 'INACTIVE'], 'G120 ' . $serial(230), false);
$again = $run->send($req, $pharmacy, ['ReturnCode' => $S, 'PackState' => 'INACTIVE'], 'G120 the same again', false);
$run->check($first?->getNMVSTransactionId() === $again?->getNMVSTransactionId(), 'the same NMVSTrxId',
    json_encode($again?->getNMVSTransactionId()));
$run->single('G120SinglePackDispenseRequest', $pharmacy, $serial(230),
    ['ReturnCode' => 'NMVS_NC_PCK_23', 'PackState' => 'INACTIVE', 'Reason' => 'SUPPLIED']);

echo "== bulk: each message of two packs and its G188 result, then its undo\n";
$bulks = [
    ['G115BulkVerifyRequest', null, null, $pharmacy],
    ['G125BulkDispenseRequest', 'G127BulkUndoDispenseRequest', 'SUPPLIED', $pharmacy],
    ['G135BulkDestroyRequest', null, 'DESTROYED', $pharmacy],
    ['G145BulkExportRequest', 'G147BulkUndoExportRequest', 'EXPORTED', $wholesaler],
    ['G155BulkSampleRequest', 'G157BulkUndoSampleRequest', 'SAMPLE', $pharmacy],
    ['G165BulkFreeSampleRequest', 'G167BulkUndoFreeSampleRequest', 'FREESAMPLE', $pharmacy],
    ['G175BulkLockRequest', 'G177BulkUndoLockRequest', 'LOCKED', $pharmacy],
    ['G185BulkStolenRequest', null, 'STOLEN', $pharmacy],
];
foreach ($bulks as $i => [$set, $undo, $reason, $who]) {
    $sns = [$serial(300 + 2 * $i), $serial(301 + 2 * $i)];
    $run->bulk($set, $who, $sns, array_map(fn($s) => [$s, $reason ? 'INACTIVE' : 'ACTIVE', $reason, $S], $sns));
    if ($undo !== null) {
        $run->bulk($undo, $who, $sns, array_map(fn($s) => [$s, 'ACTIVE', null, $S], $sns));
    }
}
$run->bulk('G125BulkDispenseRequest', $pharmacy, [$serial(399), 'EXA99999998'],
    [[$serial(399), 'INACTIVE', 'SUPPLIED', $S], ['EXA99999998', 'UNKNOWN', null, 'NMVS_NC_PC_02']]);

echo "== mixed bulk: G195 of three messages, then its G196 result\n";
$items = [['G120SinglePackDispenseRequest', 380, 'SUPPLIED'], ['G130SinglePackDestroyRequest', 381, 'DESTROYED'],
    ['G170SinglePackLockRequest', 382, 'LOCKED']];
$mixed = new R\G195MixedBulkTransactionRequest();
foreach ($items as [$class, $i]) {
    $class = "NGT\\NMVS\\Requests\\$class";
    $item = (new $class())->setProduct($run->product())->setPack(new Pack($serial($i)));
    $item->setTransactionId($run->trx());
    $mixed->addTransaction($item);
}
$accepted = $run->send($mixed, $pharmacy, ['ReturnCode' => $S], 'G195 3 items');
$result = $run->poll(fn() => (new R\G196BulkMixedOperationResultRequest())
    ->setReferenceNMVSTransactionId($accepted->getNMVSTransactionId()), $pharmacy);
$got = array_map(fn($t) => [$t->getRequestType(), $t->getPack()->getSerialNumber(), $t->getPack()->getState(),
    $t->getPack()->getReason(), $t->getPack()->getReturnCode()], $result->getTransactions());
$want = array_map(fn($x) => [substr($x[0], 0, 4), $serial($x[1]), 'INACTIVE', $x[2], $S], $items);
$run->check($got == $want, '  G196', json_encode($got), $want);

echo "== support ping\n";
$ping = new R\SupportPingRequest();
$ping->setInput('hello from the till');
$ping->setCredentials($pharmacy)->setSoftwareDetails(new SoftwareDetails());
$output = $run->handle($ping)->getInput();
$run->check($output === 'hello from the till', 'ping', json_encode($output));

echo "== a wrong password: a SOAP fault, which the client reads as an answer with no fields\n";
$run->single('G110SinglePackVerifyRequest', $login($role('PHARMACY'), 'not-the-secret'), $serial(200),
    ['ReturnCode' => null, 'PackState' => null]);

printf("\n%d requests, %d not as expected\n", $run->requests, $run->failed);
exit($run->failed === 0 ? 0 : 1);
