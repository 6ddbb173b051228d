// Applies scripts/kafka/acls.txt to a running broker with the Admin API, as the super user.
// Run by scripts/kafka.sh (Java's single-file source launcher; the broker's jars are the classpath):
//
//   java -cp 'LIBS/*' Acls.java ADMIN.properties acls.txt TOPIC_PREFIX GROUP_PREFIX
//
// Creating an ACL that exists already is a no-op, so it can be run again (e.g. for another prefix).

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class Acls {
  public static void main(String[] args) throws Exception {
    if (args.length != 4) {
      System.err.println("usage: Acls ADMIN.properties acls.txt TOPIC_PREFIX GROUP_PREFIX");
      System.exit(2);
    }
    Properties props = new Properties();
    try (var in = Files.newInputStream(Path.of(args[0]))) {
      props.load(in);
    }
    List<AclBinding> bindings = parse(Files.readAllLines(Path.of(args[1])), args[2], args[3]);
    try (Admin admin = Admin.create(props)) {
      admin.createAcls(bindings).all().get(60, TimeUnit.SECONDS);
    }
    System.out.println(bindings.size() + " ACL entries applied (topic prefix '" + args[2] + "')");
  }

  static List<AclBinding> parse(List<String> lines, String topicPrefix, String groupPrefix) {
    List<AclBinding> out = new ArrayList<>();
    for (String raw : lines) {
      String line = raw.strip();
      if (line.isEmpty() || line.startsWith("#")) {
        continue;
      }
      String[] f = line.split("\\s+");
      if (f.length != 5) {
        throw new IllegalArgumentException("expected 5 columns: " + line);
      }
      ResourceType type = switch (f[1]) {
        case "topic" -> ResourceType.TOPIC;
        case "group" -> ResourceType.GROUP;
        case "transactional-id" -> ResourceType.TRANSACTIONAL_ID;
        case "cluster" -> ResourceType.CLUSTER;
        default -> throw new IllegalArgumentException("unknown resource type: " + line);
      };
      PatternType pattern = switch (f[2]) {
        case "literal" -> PatternType.LITERAL;
        case "prefixed" -> PatternType.PREFIXED;
        default -> throw new IllegalArgumentException("unknown pattern type: " + line);
      };
      String name = f[3].replace("{p}", topicPrefix).replace("{g}", groupPrefix);
      for (String op : f[4].split(",")) {
        // Read -> READ, DescribeConfigs -> DESCRIBE_CONFIGS
        String constant = op.replaceAll("([a-z])([A-Z])", "$1_$2").toUpperCase(Locale.ROOT);
        AclOperation operation = AclOperation.valueOf(constant);
        out.add(
            new AclBinding(
                new ResourcePattern(type, name, pattern),
                new AccessControlEntry("User:" + f[0], "*", operation, AclPermissionType.ALLOW)));
      }
    }
    return out;
  }
}
