"""Every XML namespace Salon speaks, declared once."""

NS_STREAM = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_SERVER = "jabber:server"
NS_COMPONENT = "jabber:component:accept"
NS_XML = "http://www.w3.org/XML/1998/namespace"

NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_SASL_CB = "urn:xmpp:sasl-cb:0"
NS_DIALBACK = "jabber:server:dialback"
NS_DIALBACK_FEATURES = "urn:xmpp:features:dialback"

NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"  # RFC 7395, XMPP over WebSocket
NS_HTTPBIND = "http://jabber.org/protocol/httpbind"  # XEP-0124, BOSH
NS_XBOSH = "urn:xmpp:xbosh"  # XEP-0206, XMPP over BOSH
NS_XRD = "http://docs.oasis-open.org/ns/xri/xrd-1.0"  # XEP-0156 host-meta

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_PING = "urn:xmpp:ping"
NS_TIME = "urn:xmpp:time"
NS_LAST = "jabber:iq:last"
NS_VCARD = "vcard-temp"
NS_VCARD_UPDATE = "vcard-temp:x:update"
NS_PRIVATE = "jabber:iq:private"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_SERVERINFO = "http://jabber.org/network/serverinfo"
NS_VERSION = "jabber:iq:version"
NS_ROSTER = "jabber:iq:roster"
NS_ROSTER_VER = "urn:xmpp:features:rosterver"  # RFC 6121 §2.6.1 stream feature
NS_PRE_APPROVAL = "urn:xmpp:features:pre-approval"  # RFC 6121 §3.4.1 stream feature
NS_DELAY = "urn:xmpp:delay"
NS_MSGOFFLINE = "msgoffline"  # XEP-0160 §4: the disco feature is this bare word
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_HINTS = "urn:xmpp:hints"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_DATA_FORMS = "jabber:x:data"
NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
NS_REGISTER = "jabber:iq:register"
NS_FEATURE_IQREGISTER = "http://jabber.org/features/iq-register"
NS_HTTP_UPLOAD = "urn:xmpp:http:upload:0"  # XEP-0363

# XEP-0045 Multi-User Chat and its companions (salon/modules/muc)
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_MUC_ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
NS_MUC_ROOMINFO = "http://jabber.org/protocol/muc#roominfo"
NS_MUC_SELF_PING = "http://jabber.org/protocol/muc#self-ping-optimization"  # XEP-0410
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"  # XEP-0421

# XEP-0060 Publish-Subscribe, XEP-0163 PEP and what is published through them
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner"
NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_PUBSUB_NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"
NS_PUBSUB_PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
NS_PUBSUB_META_DATA = "http://jabber.org/protocol/pubsub#meta-data"
NS_PUBSUB_SUB_AUTH = "http://jabber.org/protocol/pubsub#subscribe_authorization"
NS_RSM = "http://jabber.org/protocol/rsm"  # XEP-0059
NS_XDATA_VALIDATE = "http://jabber.org/protocol/xdata-validate"  # XEP-0122
NS_MAM = "urn:xmpp:mam:2"  # XEP-0313
NS_MAM_EXTENDED = "urn:xmpp:mam:2#extended"  # XEP-0313 §7
NS_SID = "urn:xmpp:sid:0"  # XEP-0359
NS_SM = "urn:xmpp:sm:3"  # XEP-0198 Stream Management
NS_CSI = "urn:xmpp:csi:0"  # XEP-0352 Client State Indication
NS_BYTESTREAMS = "http://jabber.org/protocol/bytestreams"  # XEP-0065
NS_PUSH = "urn:xmpp:push:0"  # XEP-0357 Push Notifications
NS_PUSH_SUMMARY = "urn:xmpp:push:summary"  # XEP-0357 §7 notification summary form
NS_COMMANDS = "http://jabber.org/protocol/commands"  # XEP-0050 Ad-Hoc Commands
NS_ADMIN = "http://jabber.org/protocol/admin"  # XEP-0133 Service Administration
NS_REPORTING = "urn:xmpp:reporting:1"  # XEP-0377 Spam Reporting
NS_RETRACT = "urn:xmpp:message-retract:1"  # XEP-0424
NS_MODERATE = "urn:xmpp:message-moderate:1"  # XEP-0425
NS_BOOKMARKS = "urn:xmpp:bookmarks:1"  # XEP-0402
NS_BOOKMARKS_COMPAT = "urn:xmpp:bookmarks:1#compat"  # XEP-0402 §5.3 private XML kept in sync
NS_BOOKMARKS_COMPAT_PEP = "urn:xmpp:bookmarks:1#compat-pep"  # XEP-0402 §5.3 XEP-0048 PEP node
NS_LEGACY_BOOKMARKS = "storage:bookmarks"  # XEP-0048
NS_AVATAR_DATA = "urn:xmpp:avatar:data"  # XEP-0084
NS_AVATAR_METADATA = "urn:xmpp:avatar:metadata"  # XEP-0084
NS_PEP_VCARD_CONVERSION = "urn:xmpp:pep-vcard-conversion:0"  # XEP-0398
NS_EXTDISCO = "urn:xmpp:extdisco:2"  # XEP-0215
NS_PARS = "urn:xmpp:pars:0"  # XEP-0445 pre-authenticated registration (the preauth iq)
NS_IBR_TOKEN = "urn:xmpp:ibr-token:0"  # XEP-0445 stream feature
NS_INVITE_CREATE_ACCOUNT = "urn:xmpp:invite#create-account"  # XEP-0401 account invitation command
