# frozen_string_literal: true

# Compares sig/divvy.rbs with the loaded code and prints, as JSON, what
# divvy defines and what lacks a signature. Run by spec/signatures_spec.rb
# in a process of its own: Debian's rbs 2.1 parser breaks in a process
# whose heap was compacted (as divvy does before it forks).
#
#   ruby -Ilib spec/support/scripts/signature_gaps.rb SIG_DIR

require 'json'
require 'pathname'
require 'rbs'
require 'divvy'
require 'divvy/cli'

# Every class and module under Divvy, found by walking its constants.
def divvy_namespaces(namespace = Divvy, found = [])
  found << namespace
  namespace.constants.sort.each do |name|
    value = namespace.const_get(name, false)
    next unless value.is_a?(Module) && value.name == "#{namespace.name}::#{name}" && !found.include?(value)

    divvy_namespaces(value, found)
  end
  found
end

def type_name(namespace)
  RBS::Namespace.parse("::#{namespace.name}").to_type_name
end

loader = RBS::EnvironmentLoader.new
loader.add(path: Pathname(ARGV.fetch(0)))
ENVIRONMENT = RBS::Environment.from_loader(loader).resolve_type_names
BUILDER = RBS::DefinitionBuilder.new(env: ENVIRONMENT)

# The methods whose signature the RBS file itself declares for the
# instances (`kind` :instance) or the singleton (:singleton) of `namespace`.
def declared_methods(namespace, kind)
  name = type_name(namespace)
  return [] unless ENVIRONMENT.class_decls.key?(name)

  definition = kind == :instance ? BUILDER.build_instance(name) : BUILDER.build_singleton(name)
  definition.methods.select { |_, method| method.defined_in == name }.keys
end

def undeclared_constants(namespace)
  namespace.constants.sort.filter_map do |name|
    next if namespace.const_get(name, false).is_a?(Module)

    constant = RBS::TypeName.new(namespace: type_name(namespace).to_namespace, name: name)
    "#{namespace}::#{name}" unless ENVIRONMENT.constant_decls.key?(constant)
  end
end

namespaces = divvy_namespaces
puts JSON.generate(
  namespaces: namespaces.map(&:name),
  classes: namespaces.reject { |namespace| ENVIRONMENT.class_decls.key?(type_name(namespace)) }.map(&:name),
  constants: namespaces.flat_map { |namespace| undeclared_constants(namespace) },
  instance_methods: namespaces.flat_map do |namespace|
    (namespace.public_instance_methods(false) - declared_methods(namespace, :instance)).map { |m| "#{namespace}##{m}" }
  end.sort,
  singleton_methods: namespaces.flat_map do |namespace|
    public = namespace.singleton_class.public_instance_methods(false)
    (public - declared_methods(namespace, :singleton)).map { |m| "#{namespace}.#{m}" }
  end.sort
)
